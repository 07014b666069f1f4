"""PDF loading: paragraphs per page, located by 1-based page number.

pypdf opens the file (page tree, encryption) and decodes every page's content
streams, and the form XObjects they draw, under bounds: its own
(pypdf.Configuration: 75 MB per FlateDecode stream, ...) and ours, on what a page
(``PAGE_CONTENT_BYTES``) and the whole document (``DOCUMENT_CONTENT_BYTES``)
inflate to, a stream shared by many pages counted once per page. Hitting a bound
means a crafted file, so the whole document is refused rather than read page by
page. Only then is the text laid out, by PDFium (``text="pdfium"``, the default,
core.ingest.loaders.pdfium_text) or by pypdf (``text="pypdf"``: slower, kept for
comparison and as a fallback). A page whose content pypdf cannot decode is
skipped (and logged), whichever lays out the text. Text is counted as pages are
read, and reading stops once it passes ``max_chars``.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError, PyPdfError
from pypdf.filters import decode_stream_data
from pypdf.generic import IndirectObject, StreamObject

from core.errors import CorruptDocument, DocumentTooLarge, EmptyDocument
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

TEXT_ENGINES = ("pdfium", "pypdf")
# Decoded content (operators) a page, and a document, may hold. The largest seen in 22 SEC filings
# (1.8k pages): 0.4 MB for one page, 24 MB for a 160-page 10-K. PDFium lays out about 20 MB of
# content a second, so the document bound is about a minute of its work.
PAGE_CONTENT_BYTES = 32 << 20
DOCUMENT_CONTENT_BYTES = 1 << 30
_FORM_DEPTH = 8  # forms drawing forms: deeper than any real document nests them

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


def load(path: Path, *, max_chars: int = 5_000_000, text: str = "pdfium") -> LoadedDocument:
    """Extract each page's text; keep whatever pages a damaged file still yields."""
    if text not in TEXT_ENGINES:
        raise ValueError(f"unknown PDF text engine {text!r} (one of {', '.join(TEXT_ENGINES)})")
    reader = _open(path)
    try:
        page_count = len(reader.pages)
    except LimitReachedError as e:
        raise _beyond_limits("its page tree", e) from e
    except _PYPDF_FAILURES as e:
        raise CorruptDocument(f"PDF page tree is damaged: {_short(e)}") from e
    failures = _check_content(reader, page_count, path.name)
    pages = _pdfium_pages(path, page_count) if text == "pdfium" else _pypdf_pages(reader, page_count)
    with closing(pages):  # PDFium's lock and document are let go at once, even when reading stops early
        segments = _read(pages, failures, path.name, page_count, max_chars)
    if not segments:
        if failures:
            number, reason = min(failures.items())
            raise CorruptDocument(f"PDF pages could not be read (page {number}: {reason})")
        raise EmptyDocument("PDF has no extractable text (scanned? OCR is not supported)")
    if failures:
        log.warning("%s: indexed %d of %d pages", path.name, page_count - len(failures), page_count)
    return LoadedDocument(kind="pdf", segments=segments, title=_title(reader))


def _read(pages: Iterator[str | BaseException], failures: dict[int, str], name: str, page_count: int,
          max_chars: int) -> list[Segment]:
    """Each page's paragraphs as segments; pages that fail are added to ``failures``."""
    segments: list[Segment] = []
    chars = 0
    for number, page_text in enumerate(pages, start=1):
        if number in failures:
            continue
        if isinstance(page_text, BaseException):
            log.warning("%s: page %d could not be read: %s", name, number, page_text)
            failures[number] = _short(page_text)
            continue
        chars += len(page_text)
        if chars > max_chars:
            raise DocumentTooLarge(f"{name} has more than {max_chars:,} characters of text by page {number} "
                                   f"of {page_count}, over the limit ({_CHARS_SETTING})")
        segments.extend(
            Segment(text=paragraph.strip(), page=number)
            for paragraph in _PARAGRAPH_BREAK.split(page_text)
            if paragraph.strip()
        )
    return segments


def _pypdf_pages(reader: PdfReader, page_count: int) -> Generator[str | BaseException, None, None]:
    for number in range(1, page_count + 1):
        try:
            yield reader.pages[number - 1].extract_text() or ""
        except LimitReachedError as e:
            raise _beyond_limits(f"page {number}", e) from e
        except _PYPDF_FAILURES as e:
            yield e


def _pdfium_pages(path: Path, page_count: int) -> Generator[str | BaseException, None, None]:
    from core.ingest.loaders.pdfium_text import PdfiumError, page_texts

    try:
        read = 0
        with closing(page_texts(path, page_count)) as texts:
            for page_text in texts:
                read += 1
                yield page_text
    except PdfiumError as e:
        raise CorruptDocument(f"PDF cannot be opened (damaged or truncated?): {_short(e)}") from e
    if read < page_count:  # the two parsers disagree on a damaged page tree: pypdf's pages were checked
        log.warning("%s: PDFium found %d pages where pypdf found %d", path.name, read, page_count)


def _check_content(reader: PdfReader, page_count: int, name: str) -> dict[int, str]:
    """Decode every page's content under the bounds; the pages (1-based) pypdf could not decode, with why."""
    sizes: dict[int, int] = {}  # decoded size of each stream object, decoded once however often it is drawn
    failures: dict[int, str] = {}
    total = 0
    for number in range(1, page_count + 1):
        try:
            page = reader.pages[number - 1]
            size = _content_size(page.get("/Contents"), page.get("/Resources"), sizes, set(), 0)
        except LimitReachedError as e:
            raise _beyond_limits(f"page {number}", e) from e
        except _BeyondBounds:
            raise _bomb(f"page {number}'s content inflates to more than {PAGE_CONTENT_BYTES >> 20} MB") from None
        except _PYPDF_FAILURES as e:
            log.warning("%s: page %d could not be read: %s", name, number, e)
            failures[number] = _short(e)
            continue
        if size > PAGE_CONTENT_BYTES:
            raise _bomb(f"page {number}'s content inflates to more than {PAGE_CONTENT_BYTES >> 20} MB")
        total += size
        if total > DOCUMENT_CONTENT_BYTES:
            raise _bomb(f"its pages' content inflates to more than {DOCUMENT_CONTENT_BYTES >> 20} MB by page {number}")
    return failures


class _BeyondBounds(Exception):
    """One page's content, forms included, went past PAGE_CONTENT_BYTES."""


def _content_size(contents: object, resources: object, sizes: dict[int, int], drawing: set[int], depth: int) -> int:
    """Decoded bytes of a content stream (or array of them) and of the forms its resources hold."""
    size = 0
    for ref in _as_list(contents):
        size += _stream_size(ref, sizes)
    if depth >= _FORM_DEPTH:
        return size
    resources = resources.get_object() if resources is not None else None
    xobjects = resources.get("/XObject") if hasattr(resources, "get") else None
    xobjects = xobjects.get_object() if xobjects is not None else None
    for ref in (xobjects.values() if hasattr(xobjects, "values") else ()):
        form = ref.get_object() if isinstance(ref, IndirectObject) else ref
        if not isinstance(form, StreamObject) or form.get("/Subtype") != "/Form":
            continue
        key = ref.idnum if isinstance(ref, IndirectObject) else id(form)
        if key in drawing:  # a form that draws itself: PDFium stops such loops too
            continue
        drawing.add(key)
        size += _content_size(ref, form.get("/Resources"), sizes, drawing, depth + 1)
        drawing.discard(key)
        if size > PAGE_CONTENT_BYTES:
            raise _BeyondBounds
    return size


def _stream_size(ref: object, sizes: dict[int, int]) -> int:
    stream = ref.get_object() if isinstance(ref, IndirectObject) else ref
    if not isinstance(stream, StreamObject):
        return 0
    key = ref.idnum if isinstance(ref, IndirectObject) else id(stream)
    if key not in sizes:
        sizes[key] = len(decode_stream_data(stream))
    return sizes[key]


def _as_list(contents: object) -> list:
    if contents is None:
        return []
    resolved = contents.get_object() if isinstance(contents, IndirectObject) else contents
    return list(resolved) if isinstance(resolved, list) else [contents]


def _bomb(what: str) -> DocumentTooLarge:
    log.warning("PDF refused: %s", what)
    return DocumentTooLarge(f"PDF {what}, more than any real document needs (a decompression bomb?); refused")


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
