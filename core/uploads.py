"""Uploaded files on disk: received within their size limit, kept only while something needs them.

An upload is received into ``<folder>/.staging-<id>/<name>`` and refused at its size
limit while it streams: only limit+1 bytes are ever written, and a document above the
document limit goes as soon as its kind is known. Ingesting moves it to
``<files>/<doc_id>/<id>/<name>``, one folder per upload, so a new version never
overwrites the file the visible version (and minutes of it) rests on. Once the registry
says which version is visible, the document's other uploads go; a failed one goes too.
Uploads of one document are settled one at a time, so that cleanup sees settled state.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from core.errors import DocumentTooLarge, ImpError, InvalidRequest
from core.ingest.loaders import MEDIA, detect_kind
from core.store.registry import DocumentRegistry

log = logging.getLogger(__name__)

STAGING = ".staging-"  # an upload being received, or waiting for its job; never a committed file
_STALE_S = 3600.0  # a staging folder no job refers to, older than this, is left over from a crash
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def check_upload_name(name: str) -> str:
    """An uploaded file's name, refused when it could escape the upload folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or _UNSAFE_NAME.search(name):
        raise InvalidRequest(f"unsafe file name {name!r}: a plain file name without folders is required")
    if len(name.encode()) > 255:
        raise InvalidRequest("file name is longer than 255 bytes")
    return name


def _copy_at_most(stream: BinaryIO, out: BinaryIO, limit: int) -> int:
    """Copy up to ``limit`` bytes; returns how many were copied (``limit``: maybe more were left)."""
    copied = 0
    while copied < limit:
        block = stream.read(min(1 << 20, limit - copied))
        if not block:
            break
        out.write(block)
        copied += len(block)
    return copied


def _mb(n: int) -> str:
    mb = n / 2**20
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.2f}".rstrip("0").rstrip(".") + " MB"


def _is_media(path: Path) -> bool:
    try:
        return detect_kind(path) == MEDIA
    except ImpError:  # not readable as anything: certainly not a recording
        return False


class UploadStore:
    """Where uploads wait, and which of them stay."""

    def __init__(self, files_dir: Path, registry: DocumentRegistry, *, max_file_bytes: int, max_media_bytes: int):
        self.files_dir = files_dir
        self._registry = registry
        self._max_file_bytes = max_file_bytes  # documents (IMP_INGEST__MAX_FILE_MB)
        self._max_media_bytes = max_media_bytes  # recordings (IMP_SPEECH__MAX_FILE_MB)
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._guard = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The largest file any upload may be (a recording; documents have a lower limit)."""
        return max(self._max_file_bytes, self._max_media_bytes)

    def stage(self, filename: str, stream: BinaryIO, folder: str) -> Path:
        """Receive an upload under ``files/<folder>``; DocumentTooLarge (and nothing kept) above its limit."""
        name = check_upload_name(filename)
        staging = self.files_dir / folder / f"{STAGING}{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        target = staging / name
        try:
            with open(target, "wb") as out:
                size = _copy_at_most(stream, out, self.max_bytes + 1)
            if size > self.max_bytes:
                raise DocumentTooLarge(f"file is larger than {_mb(self.max_bytes)}, the most IMP takes "
                                       "(IMP_SPEECH__MAX_FILE_MB for recordings, IMP_INGEST__MAX_FILE_MB for documents)")
            if size > self._max_file_bytes and not _is_media(target):
                raise DocumentTooLarge(f"file is {_mb(size)}, above the {_mb(self._max_file_bytes)} limit for "
                                       "documents (IMP_INGEST__MAX_FILE_MB)")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @staticmethod
    def placed(staged: Path) -> Path:
        """Where ``settle`` puts a staged upload."""
        folder = staged.parent
        if not folder.name.startswith(STAGING):
            return staged
        return folder.parent / folder.name.removeprefix(STAGING) / staged.name

    def waiting(self, staged: Path) -> Path | None:
        """The upload a job is to ingest: still staged, or placed already by a run that was interrupted."""
        return next((p for p in (staged, self.placed(staged)) if p.is_file()), None)

    @contextmanager
    def settle(self, doc_id: str, staged: Path) -> Iterator[Path]:
        """Move a staged upload of ``doc_id`` into place for ingesting it; afterwards keep only the
        visible version's file: this one if the ingest committed it, else the one before."""
        with self._lock(doc_id):
            target = self.placed(staged)
            if target != staged and staged.exists():
                staged.parent.rename(target.parent)
            try:
                yield target
            finally:
                self._keep_visible(doc_id, target)

    def _keep_visible(self, doc_id: str, ours: Path) -> None:
        record = self._registry.find(doc_id)
        if record is None or record.extra.get("stored_path") != str(ours):
            shutil.rmtree(ours.parent, ignore_errors=True)
            return
        for entry in ours.parent.parent.iterdir():
            if entry == ours.parent or entry.name.startswith(STAGING):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:  # a file stored before uploads had a folder each
                entry.unlink(missing_ok=True)

    def discard(self, path: Path) -> None:
        """Remove an upload no job will read (minutes of a file, or one still staged): its folder, if it is ours."""
        if path.parent.parent == self.files_dir / "minutes" or path.parent.name.startswith(STAGING):
            shutil.rmtree(path.parent, ignore_errors=True)

    def remove_document(self, doc_id: str) -> None:
        shutil.rmtree(self.files_dir / doc_id, ignore_errors=True)

    def sweep(self, keep: set[str]) -> None:
        """Remove staged uploads and minutes inputs (folders not in ``keep``) that a crash left behind."""
        if not self.files_dir.is_dir():
            return
        old = time.time() - _STALE_S
        for folder in [*self.files_dir.glob(f"*/{STAGING}*"), *self.files_dir.glob("minutes/*")]:
            try:
                stale = folder.is_dir() and str(folder) not in keep and folder.stat().st_mtime < old
            except OSError:
                continue
            if stale:
                log.info("removing an upload left over from an earlier run: %s", folder.name)
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def _lock(self, doc_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(doc_id, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[doc_id]
