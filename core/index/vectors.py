"""The vector store: Chroma, embedded (PersistentClient) or remote (HttpClient).

Chroma holds only vectors and the few fields needed to filter them (doc_id,
version, scope); chunk texts live in the registry. Telemetry is off and no
embedding function is attached (Chroma's default one downloads a model).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from core.errors import BackendError
from core.models import Chunk

log = logging.getLogger(__name__)


class VectorStore(Protocol):
    def upsert(self, chunks: list[Chunk], vectors: np.ndarray) -> None: ...

    def delete(self, doc_id: str, *, keep_version: str | None = None) -> None: ...

    def query(self, vector: np.ndarray, k: int, scopes: list[str]) -> list[tuple[str, float]]: ...

    def count(self, doc_id: str | None = None, version: str | None = None) -> int: ...


class ChromaVectorStore:
    """Chunk vectors in a Chroma collection, cosine space."""

    _BATCH = 2000

    def __init__(self, collection: str, *, path: Path | None = None, url: str | None = None):
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (embedded) or url (server)")
        self._name = collection
        self._path = path
        self._url = url
        self._collection: Any = None
        self._client: Any = None
        self._lock = threading.Lock()

    def _coll(self) -> Any:
        if self._collection is not None:
            return self._collection
        with self._lock:
            if self._collection is None:
                self._collection = self._open()
        return self._collection

    def _open(self) -> Any:
        try:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            if self._url:
                u = urlparse(self._url)
                client = chromadb.HttpClient(
                    host=u.hostname or "localhost", port=u.port or (443 if u.scheme == "https" else 8000),
                    ssl=u.scheme == "https", settings=settings,
                )
            else:
                assert self._path is not None
                self._path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(self._path), settings=settings)
            self._client = client
            return client.get_or_create_collection(
                self._name, embedding_function=None, metadata={"hnsw:space": "cosine"}
            )
        except Exception as e:
            # Where and why go to the log (the operator's); the error says what, for anyone to read.
            log.error("cannot open Chroma collection %r at %s: %s", self._name, self._url or self._path, e)
            raise BackendError("cannot open the vector store (Chroma)") from e

    def close(self) -> None:
        """Release Chroma's files and connections; the next call opens the collection again."""
        with self._lock:
            client, self._client, self._collection = self._client, None, None
        if client is not None:
            client.close()

    def upsert(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        coll = self._coll()
        try:
            for i in range(0, len(chunks), self._BATCH):
                part = chunks[i : i + self._BATCH]
                coll.upsert(
                    ids=[c.chunk_id for c in part],
                    embeddings=vectors[i : i + self._BATCH],
                    metadatas=[{"doc_id": c.doc_id, "version": c.version, "scope": c.scope} for c in part],
                )
        except Exception as e:
            log.error("Chroma write failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to write") from e

    def delete(self, doc_id: str, *, keep_version: str | None = None) -> None:
        where: dict[str, Any] = {"doc_id": doc_id}
        if keep_version is not None:
            where = {"$and": [{"doc_id": doc_id}, {"version": {"$ne": keep_version}}]}
        try:
            self._coll().delete(where=where)
        except Exception as e:
            log.error("Chroma delete failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to delete") from e

    def query(self, vector: np.ndarray, k: int, scopes: list[str]) -> list[tuple[str, float]]:
        if not scopes:
            return []
        where: dict[str, Any] = {"scope": scopes[0]} if len(scopes) == 1 else {"scope": {"$in": scopes}}
        try:
            res = self._coll().query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=k, where=where,
                include=["distances"],
            )
        except Exception as e:
            log.error("Chroma search failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to search") from e
        ids = res["ids"][0] if res["ids"] else []
        dists = res["distances"][0] if res.get("distances") else [0.0] * len(ids)
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, dists, strict=True)]

    def count(self, doc_id: str | None = None, version: str | None = None) -> int:
        """All vectors, or those of one document (and one of its versions)."""
        if doc_id is None:
            return int(self._coll().count())
        where: dict[str, Any] = {"doc_id": doc_id}
        if version is not None:
            where = {"$and": [{"doc_id": doc_id}, {"version": version}]}
        try:
            return len(self._coll().get(where=where, include=[])["ids"])
        except Exception as e:
            log.error("Chroma read failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to read") from e
