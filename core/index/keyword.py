"""The keyword index: BM25 (bm25s) over every visible chunk, persisted on disk.

bm25s indexes are immutable, so the index is rebuilt from the registry when
the registry's generation (bumped on every commit or delete) moves past the
one the index was built at. The writer saves it atomically; other processes
(the server beside a CLI ingest) load the saved copy instead of rebuilding.
Scope filtering happens inside BM25 scoring through a weight mask.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.store.registry import DocumentRegistry

log = logging.getLogger(__name__)

_META = "imp_meta.json"


def _bm25s():
    import bm25s

    # bm25s sets its logger to DEBUG on import, which would print on every rebuild.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@dataclass
class _Loaded:
    generation: int
    retriever: object | None  # bm25s.BM25, None for an empty corpus
    ids: list[str]
    scopes: np.ndarray  # scope code per row
    scope_codes: dict[str, int]


class KeywordIndex:
    """BM25 over the registry's visible chunks, rebuilt lazily when content changes."""

    def __init__(self, registry: DocumentRegistry, folder: Path):
        self._registry = registry
        self._folder = folder
        self._current: _Loaded | None = None
        self._lock = threading.Lock()
        self._stemmer = None

    def _stem(self):
        if self._stemmer is None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english")
        return self._stemmer

    def _tokenize(self, texts: list[str]):
        return _bm25s().tokenize(texts, stopwords="en", stemmer=self._stem(), show_progress=False)

    def refresh(self) -> None:
        """Bring the index up to the registry's generation (load or rebuild)."""
        self._get()

    def _get(self) -> _Loaded:
        gen = self._registry.generation()
        cur = self._current
        if cur is not None and cur.generation == gen:
            return cur
        with self._lock:
            cur = self._current
            if cur is not None and cur.generation == gen:
                return cur
            loaded = self._load_saved(gen) or self._build(gen)
            self._current = loaded
            return loaded

    def _load_saved(self, gen: int) -> _Loaded | None:
        meta_path = self._folder / "current" / _META
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta["generation"] != gen:
                return None
            return self._read(self._folder / "current", meta)
        except Exception:
            # A half-written or foreign folder is rebuilt rather than trusted.
            log.warning("keyword index on disk is unreadable; rebuilding", exc_info=True)
            return None

    def _read(self, folder: Path, meta: dict) -> _Loaded:
        bm25s = _bm25s()
        ids = meta["ids"]
        codes = {s: i for i, s in enumerate(meta["scopes"])}
        scopes = np.load(folder / "scopes.npy")
        retriever = bm25s.BM25.load(str(folder / "bm25"), mmap=False) if ids else None
        return _Loaded(meta["generation"], retriever, ids, scopes, codes)

    def _build(self, gen: int) -> _Loaded:
        bm25s = _bm25s()
        ids: list[str] = []
        texts: list[str] = []
        scope_codes: dict[str, int] = {}
        scope_rows: list[int] = []
        for cid, scope, text in self._registry.iter_visible():
            ids.append(cid)
            texts.append(text)
            scope_rows.append(scope_codes.setdefault(scope, len(scope_codes)))
        retriever = None
        if ids:
            retriever = bm25s.BM25()
            retriever.index(self._tokenize(texts), show_progress=False)
        loaded = _Loaded(gen, retriever, ids, np.asarray(scope_rows, dtype=np.int32), scope_codes)
        self._save(loaded)
        log.info("keyword index rebuilt: %d chunks at generation %d", len(ids), gen)
        return loaded

    def _save(self, loaded: _Loaded) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        tmp = self._folder / f"tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            if loaded.retriever is not None:
                loaded.retriever.save(str(tmp / "bm25"))
            np.save(tmp / "scopes.npy", loaded.scopes)
            scopes = sorted(loaded.scope_codes, key=loaded.scope_codes.get)
            meta = {"generation": loaded.generation, "ids": loaded.ids, "scopes": scopes}
            (tmp / _META).write_text(json.dumps(meta))
            old = self._folder / f"old-{uuid.uuid4().hex}"
            cur = self._folder / "current"
            if cur.exists():
                cur.rename(old)
            tmp.rename(cur)
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            # Another process swapped the folder at the same moment; its copy serves as well.
            log.debug("keyword index save raced with another writer", exc_info=True)
            shutil.rmtree(tmp, ignore_errors=True)

    def query(self, text: str, k: int, scopes: list[str]) -> list[tuple[str, float]]:
        idx = self._get()
        if idx.retriever is None or not scopes:
            return []
        wanted = [idx.scope_codes[s] for s in scopes if s in idx.scope_codes]
        if not wanted:
            return []
        words = [w for w in self._query_words(text) if w in idx.retriever.vocab_dict]
        if not words:
            return []
        mask = np.isin(idx.scopes, wanted).astype(np.float32)
        docs, scores = idx.retriever.retrieve(
            [words], k=min(k, len(idx.ids)), weight_mask=mask, show_progress=False, n_threads=1,
        )
        return [(idx.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def _query_words(self, text: str) -> list[str]:
        return _bm25s().tokenize([text], stopwords="en", stemmer=self._stem(), return_ids=False,
                              show_progress=False)[0]
