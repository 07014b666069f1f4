"""The vector store: Chroma, embedded (PersistentClient) or remote (HttpClient).

Chroma holds only vectors and the few fields needed to find them again (doc_id,
version, scope); chunk texts live in the registry. Telemetry is off and no
embedding function is attached (Chroma's default one downloads a model).

Layout: one Chroma collection per scope ("per-scope", the default). A search
queries the collections of the scopes it may read and merges their nearest
neighbours, so it never needs Chroma's metadata filter, which costs about 65 ms
at 100k vectors against 3 ms for the nearest-neighbour search itself
(bench/query_path_checks.py). A scope's collection is found by name (a hash of
the store's name and the scope) and checked against the scope recorded in its
metadata, so no query can reach another scope's vectors. The "single" layout
(one collection, scope as a filtered field) is what installs had before; a
per-scope store finds such a collection under its own name, copies its vectors
into the scope collections (no re-embedding) and deletes it, once.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import numpy as np

from core.errors import BackendError
from core.models import Chunk

log = logging.getLogger(__name__)

Layout = Literal["per-scope", "single"]
_BASE_KEY = "imp_base"  # collection metadata: the store a scope collection belongs to
_SCOPE_KEY = "imp_scope"  # and its scope, verbatim
_PAGE = 5000
_MEMO = 100_000  # documents whose scope a store remembers (a document id names one scope for good)


class VectorStore(Protocol):
    def upsert(self, chunks: list[Chunk], vectors: np.ndarray) -> None: ...

    def delete(self, doc_id: str, *, keep_version: str | None = None, scope: str | None = None) -> None: ...

    def query(self, vector: np.ndarray, k: int, scopes: list[str]) -> list[tuple[str, float]]: ...

    def count(self, doc_id: str | None = None, version: str | None = None, *, scope: str | None = None) -> int: ...


def scope_collection_name(base: str, scope: str) -> str:
    """A Chroma-valid name (≤ 63 chars) for ``scope``'s collection of store ``base``: readable parts and a hash."""
    clean = "".join(ch if ch.isalnum() else "_" for ch in scope)[:16]
    digest = hashlib.sha256(f"{base}\x00{scope}".encode()).hexdigest()[:16]
    return f"{base[:24].rstrip('_.-') or 'imp'}-{clean}-{digest}"


def _doc_where(doc_id: str, version: str | None = None, *, keep_version: str | None = None) -> dict[str, Any]:
    if version is not None:
        return {"$and": [{"doc_id": doc_id}, {"version": version}]}
    if keep_version is not None:
        return {"$and": [{"doc_id": doc_id}, {"version": {"$ne": keep_version}}]}
    return {"doc_id": doc_id}


class ChromaVectorStore:
    """Chunk vectors in Chroma, cosine space: one collection per scope, or one for all ("single")."""

    _BATCH = 2000

    def __init__(self, collection: str, *, path: Path | None = None, url: str | None = None,
                 layout: Layout = "per-scope", scope_of: Callable[[str], str | None] | None = None):
        """``scope_of`` names a document's scope (the registry knows it), so that deleting or counting a
        document reads one collection instead of every scope's."""
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (embedded) or url (server)")
        if layout not in ("per-scope", "single"):
            raise ValueError("layout is per-scope or single")
        self._name = collection
        self._path = path
        self._url = url
        self._layout = layout
        self._client: Any = None
        self._collection: Any = None  # the single layout's collection
        self._scoped: dict[str, Any] = {}  # scope -> its collection, once seen
        self._doc_scope: OrderedDict[str, str] = OrderedDict()  # doc_id -> scope, from this process's writes
        self._scope_of = scope_of
        self._lock = threading.Lock()

    # -- opening -----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                client = self._open_client()
                if self._layout == "per-scope":
                    self._migrate(client)  # before anyone searches: a failed move is tried again next time
                self._client = client
        return self._client

    def _open_client(self) -> Any:
        try:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            if self._url:
                u = urlparse(self._url)
                return chromadb.HttpClient(
                    host=u.hostname or "localhost", port=u.port or (443 if u.scheme == "https" else 8000),
                    ssl=u.scheme == "https", settings=settings,
                )
            assert self._path is not None
            self._path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self._path), settings=settings)
        except Exception as e:
            # Where and why go to the log (the operator's); the error says what, for anyone to read.
            log.error("cannot open Chroma for %r at %s: %s", self._name, self._url or self._path, e)
            raise BackendError("cannot open the vector store (Chroma)") from e

    def _coll(self) -> Any:
        """The single layout's collection (the per-scope layout has one per scope: ``_scope_coll``)."""
        if self._collection is not None:
            return self._collection
        client = self._connect()
        with self._lock:
            if self._collection is None:
                try:
                    self._collection = client.get_or_create_collection(
                        self._name, embedding_function=None, metadata={"hnsw:space": "cosine"})
                except Exception as e:
                    log.error("cannot open Chroma collection %r: %s", self._name, e)
                    raise BackendError("cannot open the vector store (Chroma)") from e
        return self._collection

    def _scope_coll(self, scope: str, *, create: bool) -> Any | None:
        """``scope``'s collection; None when it does not exist and ``create`` is false."""
        coll = self._scoped.get(scope)
        if coll is not None:
            return coll
        client = self._connect()
        name = scope_collection_name(self._name, scope)
        try:
            if create:
                coll = client.get_or_create_collection(name, embedding_function=None, metadata={
                    "hnsw:space": "cosine", _BASE_KEY: self._name, _SCOPE_KEY: scope})
            else:
                coll = client.get_collection(name, embedding_function=None)
        except Exception as e:
            if not create and type(e).__name__ in ("NotFoundError", "InvalidCollectionException"):
                return None  # nothing indexed in this scope (yet): looked up again next time
            log.error("cannot open Chroma collection %r: %s", name, e)
            raise BackendError("cannot open the vector store (Chroma)") from e
        meta = coll.metadata or {}
        if meta.get(_SCOPE_KEY) != scope or meta.get(_BASE_KEY) != self._name:
            # A name collision or a collection someone else made: never read or write it as this scope.
            log.error("Chroma collection %r belongs to %r/%r, not %r/%r", name, meta.get(_BASE_KEY),
                      meta.get(_SCOPE_KEY), self._name, scope)
            raise BackendError("the vector store (Chroma) holds an unexpected collection")
        self._scoped[scope] = coll
        return coll

    def _collections(self) -> list[Any]:
        """Every collection of this store: the single one, or each scope's (listed afresh: other processes add some)."""
        if self._layout == "single":
            return [self._coll()]
        client = self._connect()
        try:
            found = [c for c in client.list_collections() if (c.metadata or {}).get(_BASE_KEY) == self._name]
        except Exception as e:
            log.error("Chroma listing failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to read") from e
        out = []
        for c in found:
            scope = c.metadata[_SCOPE_KEY]
            if c.name == scope_collection_name(self._name, scope):
                out.append(self._scoped.setdefault(scope, c))
        return out

    def _holding(self, doc_id: str, scope: str | None) -> list[Any]:
        """The collections that may hold ``doc_id``'s vectors: its scope's when known, else all of them."""
        if self._layout == "single":
            return [self._coll()]
        scope = scope or self._doc_scope.get(doc_id)
        if scope is None and self._scope_of is not None:
            try:
                scope = self._scope_of(doc_id)
            except Exception:  # only a shortcut: without it every scope is searched
                log.warning("could not look up the scope of document %s", doc_id, exc_info=True)
        if scope is None:
            return self._collections()
        coll = self._scope_coll(scope, create=False)
        return [coll] if coll is not None else []

    def _remember(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for c in chunks:
                if c.doc_id not in self._doc_scope:
                    self._doc_scope[c.doc_id] = c.scope
                    if len(self._doc_scope) > _MEMO:
                        self._doc_scope.popitem(last=False)

    def _migrate(self, client: Any) -> None:
        """Copy the vectors of a single-layout collection of this name into scope collections, then drop it."""
        try:
            legacy = client.get_collection(self._name, embedding_function=None)
        except Exception as e:  # noqa: BLE001 - Chroma's "not found" differs between client kinds and versions
            log.debug("no single-layout collection %r to move: %s", self._name, e)
            return  # nothing to migrate (the usual case)
        if (legacy.metadata or {}).get(_BASE_KEY):
            return
        try:
            moved, offset = 0, 0
            while True:
                page = legacy.get(include=["embeddings", "metadatas"], limit=_PAGE, offset=offset)
                ids = page["ids"]
                by_scope: dict[str, list[int]] = defaultdict(list)
                for i, meta in enumerate(page["metadatas"]):
                    by_scope[str((meta or {}).get("scope", ""))].append(i)
                for scope, rows in by_scope.items():
                    if not scope:
                        continue  # a vector without a scope could never be found by a search anyway
                    coll = client.get_or_create_collection(
                        scope_collection_name(self._name, scope), embedding_function=None,
                        metadata={"hnsw:space": "cosine", _BASE_KEY: self._name, _SCOPE_KEY: scope})
                    coll.upsert(ids=[ids[i] for i in rows], embeddings=np.asarray(page["embeddings"])[rows],
                                metadatas=[page["metadatas"][i] for i in rows])
                    moved += len(rows)
                if len(ids) < _PAGE:
                    break
                offset += _PAGE
            client.delete_collection(self._name)
            log.warning("vector store %r: moved %d vectors into one collection per scope", self._name, moved)
        except Exception as e:
            log.error("moving Chroma collection %r to one collection per scope failed: %s", self._name, e)
            raise BackendError("the vector store (Chroma) could not be upgraded; see the log") from e

    def close(self) -> None:
        """Release Chroma's files and connections; the next call opens them again."""
        with self._lock:
            client, self._client, self._collection = self._client, None, None
            self._scoped = {}
        if client is not None:
            client.close()

    # -- writing -----------------------------------------------------------------------

    def upsert(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        groups: dict[str, list[int]] = defaultdict(list)
        if self._layout == "per-scope":
            self._remember(chunks)
        for i, c in enumerate(chunks):
            groups[c.scope if self._layout == "per-scope" else ""].append(i)
        try:
            for scope, rows in groups.items():
                coll = self._scope_coll(scope, create=True) if scope else self._coll()
                for j in range(0, len(rows), self._BATCH):
                    part = rows[j : j + self._BATCH]
                    coll.upsert(
                        ids=[chunks[i].chunk_id for i in part],
                        embeddings=np.asarray(vectors)[part],
                        metadatas=[{"doc_id": chunks[i].doc_id, "version": chunks[i].version,
                                    "scope": chunks[i].scope} for i in part],
                    )
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma write failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to write") from e

    def delete(self, doc_id: str, *, keep_version: str | None = None, scope: str | None = None) -> None:
        """Delete a document's vectors (all but ``keep_version``'s); ``scope``, when known, spares a search for them."""
        where = _doc_where(doc_id, keep_version=keep_version)
        try:
            for coll in self._holding(doc_id, scope):
                coll.delete(where=where)
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma delete failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to delete") from e

    def delete_ids(self, ids: list[str]) -> None:
        """Delete vectors by chunk id, in whichever collection holds them."""
        try:
            for coll in self._collections():
                for i in range(0, len(ids), _PAGE):
                    coll.delete(ids=ids[i : i + _PAGE])
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma delete in %r failed: %s", self._name, e)
            raise BackendError("the vector store (Chroma) failed to delete") from e

    # -- reading -----------------------------------------------------------------------

    def query(self, vector: np.ndarray, k: int, scopes: list[str]) -> list[tuple[str, float]]:
        scopes = list(dict.fromkeys(s for s in scopes if s))
        if not scopes or k < 1:
            return []
        vec = [np.asarray(vector, dtype=np.float32)]
        try:
            if self._layout == "single":
                where: dict[str, Any] = {"scope": scopes[0]} if len(scopes) == 1 else {"scope": {"$in": scopes}}
                results = [self._coll().query(query_embeddings=vec, n_results=k, where=where, include=["distances"])]
            else:
                colls = [c for c in (self._scope_coll(s, create=False) for s in scopes) if c is not None]
                results = [c.query(query_embeddings=vec, n_results=k, include=["distances"]) for c in colls]
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma search failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to search") from e
        found: list[tuple[str, float]] = []
        for res in results:
            ids = res["ids"][0] if res["ids"] else []
            dists = res["distances"][0] if res.get("distances") else [0.0] * len(ids)
            found.extend((cid, 1.0 - float(d)) for cid, d in zip(ids, dists, strict=True))
        return heapq.nlargest(k, found, key=lambda item: item[1]) if len(results) > 1 else found

    def count(self, doc_id: str | None = None, version: str | None = None, *, scope: str | None = None) -> int:
        """All vectors, or those of one document (and one of its versions); ``scope``: the document's, when known."""
        try:
            if doc_id is None:
                return sum(int(c.count()) for c in self._collections())
            where = _doc_where(doc_id, version)
            return sum(len(c.get(where=where, include=[])["ids"]) for c in self._holding(doc_id, scope))
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma read failed: %s", e)
            raise BackendError("the vector store (Chroma) failed to read") from e

    def ids(self) -> set[str]:
        """Every chunk id with a vector here."""
        found: set[str] = set()
        try:
            for coll in self._collections():
                offset = 0
                while True:
                    page = coll.get(include=[], limit=_PAGE, offset=offset)["ids"]
                    found.update(page)
                    if len(page) < _PAGE:
                        break
                    offset += _PAGE
        except BackendError:
            raise
        except Exception as e:
            log.error("Chroma listing of %r failed: %s", self._name, e)
            raise BackendError("the vector store (Chroma) failed to read") from e
        return found
