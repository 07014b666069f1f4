"""The served-model pointers: which version of each model every slot serves, shared by all processes.

``imp train`` (a CLI) switches while ``imp serve`` answers: both read this table in the
shared database. Every change bumps a generation counter (a ``meta`` row), so a
process learns that something changed by reading one small row, not the table.

Also here: the two reads a collection sync needs of the registry's tables (which chunk ids are
visible, which chunk ids exist at all), kept out of the registry's own module.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Integer, String, cast, delete, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models import ServedModel
from core.store.database import Database
from core.store.schema import ChunkRow, DocumentRow, MetaRow, ServedModelRow

EMBEDDER = "imp-embedder"
ADAPTER = "imp-answer-adapter"
CHAMPION = "champion"
CHALLENGER = "challenger"
BASE = "base"
SLOTS = (CHAMPION, CHALLENGER)
_GENERATION = "served_generation"
_IN_BATCH = 500  # ids per IN (...) clause: well under SQLite's variable limit


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _model(r: ServedModelRow) -> ServedModel:
    return ServedModel(name=r.name, slot=r.slot, version=r.version, path=r.path, model_id=r.model_id,
                       since=r.since, collection=r.collection)


class ServedModels:
    """Reads and writes the pointer table; each write bumps the generation in the same transaction."""

    def __init__(self, database: Database):
        self._db = database

    def generation(self) -> int:
        with self._db.session() as s:
            row = s.get(MetaRow, _GENERATION)
            return int(row.value) if row else 0

    def list(self, name: str | None = None) -> list[ServedModel]:
        q = select(ServedModelRow).order_by(ServedModelRow.name, ServedModelRow.slot)
        if name is not None:
            q = q.where(ServedModelRow.name == name)
        with self._db.session() as s:
            return [_model(r) for r in s.scalars(q)]

    def get(self, name: str, slot: str) -> ServedModel | None:
        with self._db.session() as s:
            row = s.get(ServedModelRow, (name, slot))
            return _model(row) if row else None

    def put(self, name: str, slot: str, version: str, *, path: str | None, model_id: str | None,
            collection: str | None, clear: Iterable[str] = ()) -> int:
        """Point ``slot`` at ``version``, and empty the slots in ``clear`` (a promoted challenger's).

        Returns the generation this change made, so the caller does not take it for someone else's.
        """
        values = {"version": version, "path": path, "model_id": model_id, "collection": collection, "since": _now()}
        with self._db.session() as s, s.begin():
            # A write first, so two processes switching at once queue on SQLite's lock instead of colliding.
            generation = _bump(s)
            if s.get_bind().dialect.name == "sqlite":
                s.execute(sqlite_insert(ServedModelRow).values(name=name, slot=slot, **values)
                          .on_conflict_do_update(index_elements=["name", "slot"], set_=values))
            else:
                row = s.get(ServedModelRow, (name, slot))
                if row is None:
                    s.add(ServedModelRow(name=name, slot=slot, **values))
                else:
                    for key, value in values.items():
                        setattr(row, key, value)
            for other in clear:
                s.execute(delete(ServedModelRow).where(ServedModelRow.name == name, ServedModelRow.slot == other))
            return generation

    def remove(self, name: str, slot: str) -> int:
        """Empty a slot; returns the generation this change made."""
        with self._db.session() as s, s.begin():
            generation = _bump(s)
            s.execute(delete(ServedModelRow).where(ServedModelRow.name == name, ServedModelRow.slot == slot))
            return generation


def _bump(s: Session) -> int:
    """Add one to the generation and return it; the first bump creates its row (two processes may race to)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(sqlite_insert(MetaRow).values(key=_GENERATION, value="0").on_conflict_do_nothing())
    elif s.get(MetaRow, _GENERATION) is None:
        s.add(MetaRow(key=_GENERATION, value="0"))
        s.flush()
    s.execute(update(MetaRow).where(MetaRow.key == _GENERATION)
              .values(value=cast(cast(MetaRow.value, Integer) + 1, String)))
    return int(s.scalar(select(MetaRow.value).where(MetaRow.key == _GENERATION)))


def visible_chunk_ids(database: Database) -> set[str]:
    """The ids of every chunk search may show (of a committed version), without their texts."""
    q = (select(ChunkRow.chunk_id).join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
         .where(DocumentRow.version == ChunkRow.version))
    with database.session() as s:
        return set(s.scalars(q))


def known_chunk_ids(database: Database, chunk_ids: Iterable[str]) -> set[str]:
    """The ids among ``chunk_ids`` that have a chunk row: visible, or of a version being written now."""
    ids = list(dict.fromkeys(chunk_ids))
    found: set[str] = set()
    with database.session() as s:
        for i in range(0, len(ids), _IN_BATCH):
            found.update(s.scalars(select(ChunkRow.chunk_id).where(ChunkRow.chunk_id.in_(ids[i : i + _IN_BATCH]))))
    return found
