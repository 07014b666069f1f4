"""PDF loading with pypdf: paragraphs per page, located by 1-based page number.

pypdf bounds what one stream may inflate to and how much work parsing one
content stream may take (pypdf.Configuration: 75 MB per FlateDecode stream,
2 million content-stream operations...); hitting such a limit means a crafted
file, so the whole document is refused rather than read page by page. Text is
counted as pages are read, and reading stops once it passes ``max_chars``.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError, PyPdfError

from core.errors import CorruptDocument, DocumentTooLarge, EmptyDocument
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

# pypdf reports damage through its own errors and, deeper in its parsers, through
# plain builtins; all of them mean "this file is broken", never a bug of ours.
_PYPDF_FAILURES: tuple[type[BaseException], ...] = (
    PyPdfError,
    DependencyError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    AssertionError,
    RecursionError,
    NotImplementedError,  # a filter or feature pypdf does not support (/JBIG2Decode without jbig2dec, ...)
    struct.error,
    zlib.error,
)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_CHARS_SETTING = "IMP_INGEST__MAX_CHARS"


def load(path: Path, *, max_chars: int = 5_000_000) -> LoadedDocument:
    """Extract each page's text; keep whatever pages a damaged file still yields."""
    reader = _open(path)
    try:
        page_count = len(reader.pages)
    except LimitReachedError as e:
        raise _beyond_limits("its page tree", e) from e
    except _PYPDF_FAILURES as e:
        raise CorruptDocument(f"PDF page tree is damaged: {_short(e)}") from e
    segments: list[Segment] = []
    failures: list[str] = []
    chars = 0
    for number in range(1, page_count + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except LimitReachedError as e:
            raise _beyond_limits(f"page {number}", e) from e
        except _PYPDF_FAILURES as e:
            log.warning("%s: page %d could not be read: %s", path.name, number, e)
            failures.append(f"page {number}: {_short(e)}")
            continue
        chars += len(text)
        if chars > max_chars:
            raise DocumentTooLarge(f"{path.name} has more than {max_chars:,} characters of text by page {number} "
                                   f"of {page_count}, over the limit ({_CHARS_SETTING})")
        segments.extend(
            Segment(text=paragraph.strip(), page=number)
            for paragraph in _PARAGRAPH_BREAK.split(text)
            if paragraph.strip()
        )
    if not segments:
        if failures:
            raise CorruptDocument(f"PDF pages could not be read ({failures[0]})")
        raise EmptyDocument("PDF has no extractable text (scanned? OCR is not supported)")
    if failures:
        log.warning("%s: indexed %d of %d pages", path.name, page_count - len(failures), page_count)
    return LoadedDocument(kind="pdf", segments=segments, title=_title(reader))


def _beyond_limits(where: str, e: LimitReachedError) -> DocumentTooLarge:
    log.warning("PDF refused, %s is beyond pypdf's limits: %s", where, e)
    return DocumentTooLarge(f"PDF {where} holds more compressed data or structure than any real document "
                            "needs (a decompression bomb?); refused")


def _short(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _open(path: Path) -> PdfReader:
    try:
        reader = PdfReader(path, strict=False)
    except LimitReachedError as e:
        raise _beyond_limits("structure", e) from e
    except _PYPDF_FAILURES as e:
        raise CorruptDocument(f"PDF cannot be opened (damaged or truncated?): {_short(e)}") from e
    if not reader.is_encrypted:
        return reader
    # Many PDFs are "encrypted" only to restrict printing or copying, with an
    # empty user password; those open for reading like any other.
    try:
        result = reader.decrypt("")
    except DependencyError as e:
        raise CorruptDocument(
            f"PDF uses an encryption this installation cannot open: {_short(e)}"
        ) from e
    except _PYPDF_FAILURES as e:
        raise CorruptDocument(f"PDF encryption data is damaged: {_short(e)}") from e
    if result == PasswordType.NOT_DECRYPTED:
        raise CorruptDocument("PDF is encrypted with a password")
    return reader


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except _PYPDF_FAILURES as e:
        log.debug("PDF metadata unreadable: %s", e)
        return None
    if isinstance(title, str) and title.strip():
        return title.strip()
    return None
