"""Served embedders: the champion (always) and a challenger (optional), each on its own collection.

A served embedder is a version ("base" = the configured or bundled model, or a registry
version such as "3"), its loaded model, and the Chroma collection of that model's vectors.
Search reads an immutable snapshot of the set without a lock; a switch builds the new
snapshot and replaces it in one assignment.

Switching keeps search answering from the current collection while the new one is brought
up to date (``sync``: embed what is missing, delete what is no longer visible). Ingestion
writes to every served collection under a shared lock; the switch takes it alone for the
last delta and the swap, so no document committed meanwhile is missed, then runs one more
delta for writers in other processes. Other processes (``imp train`` switches while ``imp
serve`` answers) read the pointer table's generation at most every ``check_s`` seconds and
adopt a change in the background: load the model once, delta-sync, swap.

A vector is deleted by a sync only if no chunk row has its id: chunk texts are stored before
their vectors, so an ingest in flight (in any process) never loses vectors to a sync.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from core.errors import BackendError, InvalidRequest, NotFound
from core.index.embedders import Embedder
from core.index.vectors import ChromaVectorStore, VectorStore
from core.models import ServedModel, SwitchReport
from core.store.registry import DocumentRegistry
from core.store.served import (
    BASE, CHALLENGER, CHAMPION, EMBEDDER, SLOTS, ServedModels, known_chunk_ids, visible_chunk_ids,
)

log = logging.getLogger(__name__)

SyncProgress = Callable[[int, int], None]  # (chunks embedded, chunks to embed)
_EMBED_BATCH = 256


def slug(model_id: str) -> str:
    """A collection-safe name for a model id: its readable part and a hash of the whole id."""
    name = model_id.split(":", 1)[-1].split("@", 1)[0]
    clean = "".join(ch if ch.isalnum() else "_" for ch in name)[:40]
    return f"{clean}_{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def collection_name(prefix: str, model_id: str, version: str) -> str:
    """Base keeps the collection installs already have; each trained version gets its own (≤ 63 chars)."""
    if version == BASE:
        return f"{prefix}_{slug(model_id)}"
    name = "".join(ch if ch.isalnum() else "_" for ch in model_id.split(":", 1)[-1].split("@", 1)[0])[:16]
    ver = "".join(ch if ch.isalnum() else "_" for ch in version)[:12]
    digest = hashlib.sha256(f"{model_id}|{version}".encode()).hexdigest()[:8]
    return f"{prefix[:20]}_{name}_v{ver}_{digest}"


class ChromaCollection(ChromaVectorStore):
    """A served model's Chroma store; it lists its ids and deletes by id, which a sync needs."""


def scope_lookup(registry: DocumentRegistry) -> Callable[[str], str | None]:
    """A document's scope as the registry records it (a document id belongs to one scope for good)."""

    def scope_of(doc_id: str) -> str | None:
        record = registry.find(doc_id)
        return record.scope if record else None

    return scope_of


@dataclass(frozen=True, slots=True)
class SyncResult:
    embedded: int
    deleted: int


def sync(registry: DocumentRegistry, store: ChromaCollection, embedder: Embedder,
         progress: SyncProgress | None = None, *, deletes: bool = True) -> SyncResult:
    """Make ``store`` hold the vectors of exactly the visible chunks: embed the missing, delete the rest.

    For a new collection this is a full re-index, in batches, with ``progress``.
    """
    have = store.ids()
    missing = sorted(visible_chunk_ids(registry.database) - have)
    embedded = 0
    if progress:
        progress(0, len(missing))
    for i in range(0, len(missing), _EMBED_BATCH):
        chunks = list(registry.visible_chunks(missing[i : i + _EMBED_BATCH]).values())  # some may be gone by now
        if chunks:
            store.upsert(chunks, embedder.embed([c.text for c in chunks]))
            embedded += len(chunks)
        if progress:
            progress(min(i + _EMBED_BATCH, len(missing)), len(missing))
    deleted = 0
    if deletes:
        # Listed again: vectors written since the first listing may be of chunks deleted since.
        stale = store.ids() - visible_chunk_ids(registry.database)
        stale -= known_chunk_ids(registry.database, stale)  # a version being written now: its writer owns them
        if stale:
            store.delete_ids(sorted(stale))
            deleted = len(stale)
    return SyncResult(embedded, deleted)


class SwitchLock:
    """Writers share it; a switch holds it alone. A waiting switch goes before writers that come later.

    Not reentrant: a writer takes it once per document (after its writer lease, never before).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers = 0
        self._switching = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._switching or self._waiting:
                self._cond.wait()
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._switching or self._writers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._switching = True
        try:
            yield
        finally:
            with self._cond:
                self._switching = False
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Served:
    """One served embedder: its version, model and collection."""

    version: str
    embedder: Embedder
    store: VectorStore
    collection: str
    path: Path | None = None
    since: datetime | None = None  # when its pointer was set (None: never recorded, the default base)


@dataclass(frozen=True, slots=True)
class Snapshot:
    champion: Served
    challenger: Served | None = None

    def targets(self) -> list[Served]:
        """Every served collection: where ingestion writes and deletes."""
        return [self.champion] + ([self.challenger] if self.challenger else [])

    def pick(self, challenger: bool) -> Served:
        return self.challenger if challenger and self.challenger else self.champion


@dataclass(frozen=True, slots=True)
class ServingFactory:
    """How to open a version's model and its collection (app.py knows the settings)."""

    embedder: Callable[[Path], Embedder]
    store: Callable[[str], ChromaCollection]
    prefix: str


class ServingSet:
    """The served embedders of this process, kept in step with the pointer table."""

    def __init__(self, base: Served, *, registry: DocumentRegistry | None = None,
                 pointers: ServedModels | None = None, factory: ServingFactory | None = None,
                 check_s: float = 2.0):
        self._base = base
        self._registry = registry
        self._pointers = pointers
        self._factory = factory
        self._check_s = check_s
        self._snap = Snapshot(base)
        self._lock = SwitchLock()
        self._switching = threading.Lock()  # one switch or adoption at a time in this process
        self._checking = threading.Lock()
        self._next_check = 0.0
        self._seen = -1
        self._refresher: threading.Thread | None = None
        self._stores: dict[str, ChromaCollection] = {}
        self._embedders: dict[str, Embedder] = {}

    @classmethod
    def fixed(cls, embedder: Embedder, store: VectorStore) -> ServingSet:
        """One embedder on one store, never switched (components built by hand: tests, benchmarks)."""
        return cls(Served(BASE, embedder, store, "", None))

    @property
    def switchable(self) -> bool:
        return self._pointers is not None and self._factory is not None and self._registry is not None

    # -- reading -----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What serves now, without a lock; at most every ``check_s`` it looks for a change by another process."""
        if self.switchable and time.monotonic() >= self._next_check and self._checking.acquire(blocking=False):
            try:
                self._next_check = time.monotonic() + self._check_s
                self._look()
            finally:
                self._checking.release()
        return self._snap

    @contextmanager
    def writing(self) -> Iterator[list[Served]]:
        """The collections to write to, held steady until the block ends (a switch waits for it)."""
        self.snapshot()
        with self._lock.shared():
            yield self._snap.targets()

    def _look(self) -> None:
        try:
            generation = self._pointers.generation()
        except Exception:  # the database busy or gone: keep serving what is loaded
            log.warning("could not read the served-model generation", exc_info=True)
            return
        if generation == self._seen or (self._refresher and self._refresher.is_alive()):
            return
        self._refresher = threading.Thread(target=self._adopt, name="imp-serving-refresh", daemon=True)
        self._refresher.start()

    # -- start and adoption --------------------------------------------------------

    def load(self) -> None:
        """Serve what the pointer table says (at start), falling back to base when a folder is gone."""
        if not self.switchable:
            return
        generation = self._pointers.generation()
        rows = {m.slot: m for m in self._pointers.list(EMBEDDER)}
        champion = self._resolve(rows.get(CHAMPION)) or self._base
        challenger = self._resolve(rows.get(CHALLENGER))
        self._snap = Snapshot(champion, challenger)
        self._seen = generation

    def _resolve(self, row: ServedModel | None) -> Served | None:
        """The served embedder a pointer names; None (logged) when its folder is gone."""
        if row is None:
            return None
        if row.version == BASE and not row.path:
            return replace(self._base, since=row.since)
        path = Path(row.path) if row.path else None
        if path is None or not path.is_dir():
            log.error("the %s embedder, version %s, is not servable: its folder %s is missing", row.slot,
                      row.version, row.path)
            if row.slot == CHAMPION:
                log.warning("SERVING THE BASE EMBEDDER instead of version %s until its folder is restored "
                            "or another version is served", row.version)
            return None
        return self._open(row.version, path, since=row.since, collection=row.collection)

    def _open(self, version: str, path: Path | None, *, since: datetime | None = None,
              collection: str | None = None) -> Served:
        if version == BASE and path is None:
            return replace(self._base, since=since)
        if path is None:
            raise InvalidRequest(f"version {version} needs the folder of its model")
        if not path.is_dir():
            raise NotFound(f"no model folder at {path}")
        assert self._factory is not None
        key = str(path.resolve())
        embedder = self._embedders.get(key) or self._factory.embedder(path)  # loaded once per folder
        self._embedders[key] = embedder
        name = collection or collection_name(self._factory.prefix, embedder.model_id, version)
        store = self._stores.get(name) or self._factory.store(name)
        self._stores[name] = store
        return Served(version, embedder, store, name, path, since)

    def _adopt(self) -> None:
        """Another process switched: load what the pointers name, bring its collection up to date, swap."""
        try:
            with self._switching:
                generation = self._pointers.generation()
                rows = {m.slot: m for m in self._pointers.list(EMBEDDER)}
                now = self._snap
                wanted = {slot: self._resolve(rows.get(slot)) for slot in SLOTS}
                wanted[CHAMPION] = wanted[CHAMPION] or self._base
                fresh = [s for slot, s in wanted.items() if s is not None and not _same(s, getattr(now, slot))]
                for served in fresh:
                    _warm(served.embedder)
                    self._sync(served, deletes=False)
                with self._lock.exclusive():
                    for served in fresh:
                        self._sync(served)
                    self._snap = Snapshot(wanted[CHAMPION], wanted[CHALLENGER])
                    self._seen = generation
                for served in fresh:
                    self._sync(served, deletes=False)
                if fresh:
                    log.info("now serving embedder %s%s (switched by another process)", wanted[CHAMPION].version,
                             f", challenger {wanted[CHALLENGER].version}" if wanted[CHALLENGER] else "")
        except Exception:
            log.exception("could not adopt the served embedders another process chose; still serving %s",
                          self._snap.champion.version)
            self._next_check = time.monotonic() + 30  # not every two seconds

    # -- switching ---------------------------------------------------------------

    def serve(self, version: str, path: Path | None, slot: str = CHAMPION,
              progress: SyncProgress | None = None) -> SwitchReport:
        """Bring ``version``'s collection up to date while search goes on, then swap it in atomically."""
        if slot not in SLOTS:
            raise InvalidRequest(f"slot is one of {', '.join(SLOTS)}")
        if not self.switchable:
            raise BackendError("this engine serves one fixed embedder")
        started = time.perf_counter()
        with self._switching:
            served = self._open(version, Path(path) if path else None)
            _warm(served.embedder)
            before = self._snap
            previous = getattr(before, slot)
            first = self._sync(served, progress, deletes=False)
            with self._lock.exclusive():
                last = self._sync(served)
                promoted = slot == CHAMPION and before.challenger is not None and before.challenger.version == version
                clear = [CHALLENGER] if promoted else []
                self._seen = self._pointers.put(EMBEDDER, slot, version, path=str(served.path) if served.path else None,
                                                model_id=served.embedder.model_id, collection=served.collection,
                                                clear=clear)
                served = replace(served, since=_now())
                if slot == CHAMPION:
                    self._snap = Snapshot(served, None if promoted else before.challenger)
                else:
                    self._snap = Snapshot(before.champion, served)
            after = self._sync(served, deletes=False)  # commits of writers in other processes
        log.info("embedder %s version %s served from %s (was %s)", slot, version, served.collection,
                 previous.version if previous else None)
        return SwitchReport(name=EMBEDDER, slot=slot, version=version,
                            previous_version=previous.version if previous else None,
                            embedded=first.embedded + last.embedded + after.embedded, deleted=last.deleted,
                            seconds=round(time.perf_counter() - started, 3), collection=served.collection)

    def retire(self, slot: str = CHALLENGER) -> bool:
        """Stop serving the challenger (its collection stays, so serving it again costs only a delta)."""
        if slot != CHALLENGER:
            raise InvalidRequest("the champion cannot be retired; serve another version as champion instead")
        if not self.switchable:
            return False
        with self._switching, self._lock.exclusive():
            had = self._snap.challenger is not None
            self._seen = self._pointers.remove(EMBEDDER, CHALLENGER)
            self._snap = Snapshot(self._snap.champion)
        return had

    def _sync(self, served: Served, progress: SyncProgress | None = None, *, deletes: bool = True) -> SyncResult:
        assert self._registry is not None and isinstance(served.store, ChromaCollection)
        return sync(self._registry, served.store, served.embedder, progress, deletes=deletes)

    def close(self) -> None:
        """Release every collection opened here (the next use opens them again)."""
        refresher = self._refresher
        if refresher is not None:
            refresher.join(timeout=30)
        for store in {id(s): s for s in [self._base.store, *self._stores.values()]}.values():
            close = getattr(store, "close", None)
            if close:
                close()


def _same(a: Served, b: Served | None) -> bool:
    return b is not None and a.version == b.version and a.collection == b.collection


def _warm(embedder: Embedder) -> None:
    warm = getattr(embedder, "warm_up", None)
    if warm:
        warm()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
