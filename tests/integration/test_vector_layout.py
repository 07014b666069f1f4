"""The vector store keeps one Chroma collection per scope: searches see only the scopes they name,
installs with the older single collection keep their vectors, and hostile scope names stay apart.

Real Chroma on a temporary folder; vectors are small hand-made unit vectors so the expected
neighbours are known.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BackendError
from core.index.serving import ChromaCollection
from core.index.vectors import ChromaVectorStore, scope_collection_name
from core.models import Chunk


def _chunk(i: int, scope: str, doc: str = "d", version: str = "v1") -> Chunk:
    return Chunk(chunk_id=f"{doc}-{version}-{i:05d}", doc_id=doc, version=version, ordinal=i, source=f"{doc}.txt",
                 scope=scope, text=f"chunk {i}")


def _unit(*values: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_a_search_returns_only_the_scopes_it_names_best_first(tmp_path):
    store = ChromaVectorStore("imp_test", path=tmp_path / "chroma")
    chunks = [_chunk(0, "hr", "a"), _chunk(1, "hr", "a"), _chunk(0, "eng", "b"), _chunk(0, "C123:x@y", "c")]
    vectors = np.stack([_unit(1, 0.1), _unit(0.2, 1), _unit(1, 0), _unit(1, 0.05)])
    store.upsert(chunks, vectors)

    only_hr = store.query(_unit(1, 0), 10, ["hr"])
    assert {cid for cid, _ in only_hr} == {"a-v1-00000", "a-v1-00001"}
    assert [cid for cid, _ in store.query(_unit(1, 0), 10, ["nobody-here"])] == []

    merged = store.query(_unit(1, 0), 2, ["hr", "eng", "C123:x@y"])
    assert [cid for cid, _ in merged] == ["b-v1-00000", "c-v1-00000"]  # nearest across scopes, k kept
    assert merged[0][1] > merged[1][1]
    assert store.count() == 4 and store.count("a") == 2 and store.count("a", "v1") == 2


def test_deleting_a_document_another_process_wrote_finds_its_scope(tmp_path):
    writer = ChromaCollection("imp_test", path=tmp_path / "chroma")
    writer.upsert([_chunk(0, "hr", "a", "v1"), _chunk(1, "hr", "a", "v2"), _chunk(0, "eng", "b")],
                  np.stack([_unit(1), _unit(0, 1), _unit(1, 1)]))
    writer.close()
    other = ChromaCollection("imp_test", path=tmp_path / "chroma")  # knows nothing of what was written

    other.delete("a", keep_version="v2")

    assert other.ids() == {"a-v2-00001", "b-v1-00000"}
    other.delete_ids(["b-v1-00000"])
    assert other.ids() == {"a-v2-00001"}
    assert other.query(_unit(0, 1), 5, ["eng"]) == []


def test_an_install_with_one_collection_keeps_its_vectors_after_the_upgrade(tmp_path):
    old = ChromaVectorStore("imp_test", path=tmp_path / "chroma", layout="single")
    old.upsert([_chunk(0, "hr", "a"), _chunk(0, "eng", "b")], np.stack([_unit(1), _unit(0, 1)]))
    assert [cid for cid, _ in old.query(_unit(1), 5, ["hr"])] == ["a-v1-00000"]
    old.close()

    new = ChromaVectorStore("imp_test", path=tmp_path / "chroma")

    assert [cid for cid, _ in new.query(_unit(1), 5, ["hr"])] == ["a-v1-00000"]
    assert [cid for cid, _ in new.query(_unit(1), 5, ["eng"])] == ["b-v1-00000"]
    assert new.count() == 2
    import chromadb

    names = {c.name for c in chromadb.PersistentClient(path=str(tmp_path / "chroma")).list_collections()}
    assert "imp_test" not in names  # moved, not copied twice


def test_scopes_that_differ_only_in_punctuation_get_separate_collections(tmp_path):
    scopes = ["team:a", "team@a", "team.a", "team-a", "team_a", "T" * 300]
    names = {scope_collection_name("imp_chunks_all_MiniLM_L6_v2_0123abcd" * 2, s) for s in scopes}
    assert len(names) == len(scopes) and all(3 <= len(n) <= 63 for n in names)

    store = ChromaVectorStore("imp_test", path=tmp_path / "chroma")
    store.upsert([_chunk(i, s, f"d{i}") for i, s in enumerate(scopes)], np.stack([_unit(1)] * len(scopes)))
    for i, s in enumerate(scopes):
        assert [cid for cid, _ in store.query(_unit(1), 10, [s])] == [f"d{i}-v1-{i:05d}"]


def test_a_collection_that_is_not_the_scopes_own_is_never_read(tmp_path):
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    squatter = client.get_or_create_collection(scope_collection_name("imp_test", "hr"), embedding_function=None,
                                               metadata={"imp_base": "imp_test", "imp_scope": "eng"})
    squatter.upsert(ids=["x"], embeddings=[_unit(1)], metadatas=[{"scope": "eng"}])

    store = ChromaVectorStore("imp_test", path=tmp_path / "chroma")
    with pytest.raises(BackendError):
        store.query(_unit(1), 5, ["hr"])
