"""Loaders turn a file into ordered, located text segments.

``detect_kind`` looks at the content (magic bytes, container layout, text
shape) and only falls back on the extension to break ties between text
formats. ``load_file`` dispatches to the loader for that kind. Each loader
converts library exceptions into ImpError subclasses.

A loader's module (and its parsing library) is imported the first time a file
of its kind is read, so a loader process (core.ingest.sandbox) starts fast.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import replace
from pathlib import Path

from core.errors import DocumentTooLarge, EmptyDocument, UnsupportedFormat
from core.ingest.loaders.detect import MEDIA, detect_kind
from core.models import LoadedDocument
from core.textutil import reflow

__all__ = ["DEFAULT_MAX_CHARS", "KINDS", "LOADER_VERSION", "MEDIA", "detect_kind", "load_file"]

# Bump when loaders change the text they extract, so unchanged files are re-indexed.
LOADER_VERSION = 3

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 5_000_000
_LIMIT_SETTING = "IMP_INGEST__MAX_CHARS"

# kind -> (module in this package, function). The starred loaders parse containers
# whose work can dwarf the file (compressed streams and parts), so they take
# ``max_chars`` and stop as soon as the text is known to be over it.
_LOADERS: dict[str, tuple[str, str]] = {
    "pdf": ("pdf", "load*"),
    "docx": ("office", "load_docx*"),
    "pptx": ("office", "load_pptx*"),
    "xlsx": ("office", "load_xlsx*"),
    "csv": ("tabular", "load"),
    "html": ("web", "load_html"),
    "markdown": ("web", "load_markdown"),
    "text": ("text", "load"),
    "email": ("mail", "load"),
    "vtt": ("subtitles", "load_vtt"),
    "srt": ("subtitles", "load_srt"),
}
KINDS: frozenset[str] = frozenset(_LOADERS)

# Kinds whose extracted text is about as long as the file. Each decoded
# character takes at most 4 bytes (UTF-8, UTF-16 pairs, UTF-32), so a file over
# 4 × max_chars bytes cannot fit and is refused before it is read and decoded.
# Markup-heavy kinds (HTML, e-mail with attachments, subtitles) are measured
# after extraction instead: their files are legitimately much larger than their text.
_PRECHECKED_KINDS = frozenset({"text", "markdown", "csv"})
_MAX_BYTES_PER_CHAR = 4

_EMPTY_REASONS = {
    "docx": "Word document has no text",
    "pptx": "presentation has no text on its slides or in its notes",
    "xlsx": "spreadsheet has no cell values",
    "csv": "CSV file has no values",
    "html": "HTML page has no visible text",
    "markdown": "Markdown file has no text",
    "text": "text file has only blank lines",
    "email": "e-mail has no headers or body text",
    "vtt": "subtitle file has no cue text",
    "srt": "subtitle file has no cue text",
}


def _logical_lines(document: LoadedDocument) -> LoadedDocument:
    """Rejoin hard-wrapped lines inside segments, so a line break always ends a unit of text."""
    segments = [replace(s, text="\n".join(reflow(s.text))) if "\n" in s.text else s for s in document.segments]
    return replace(document, segments=segments)


def load_file(path: Path, *, max_chars: int = DEFAULT_MAX_CHARS, kind: str | None = None,
              pdf_text: str = "pdfium") -> LoadedDocument:
    """Extract ``path``'s segments (its format detected unless ``kind`` is given), enforcing ``max_chars``.

    ``pdf_text``: what lays out a PDF's text, "pdfium" or "pypdf" (core.ingest.loaders.pdf)."""
    path = Path(path)
    kind = kind or detect_kind(path)
    if kind == MEDIA:
        raise UnsupportedFormat(f"{path.name} is a recording: it is transcribed, not read as a document")
    if kind in _PRECHECKED_KINDS:
        size = path.stat().st_size
        if size > max_chars * _MAX_BYTES_PER_CHAR:
            raise DocumentTooLarge(
                f"{path.name} is {size:,} bytes of {kind}, more text than the limit of "
                f"{max_chars:,} characters ({_LIMIT_SETTING})"
            )
    module, function = _LOADERS[kind]
    loader = getattr(importlib.import_module(f"{__name__}.{module}"), function.rstrip("*"))
    options = {"text": pdf_text} if kind == "pdf" else {}
    raw = loader(path, max_chars=max_chars, **options) if function.endswith("*") else loader(path)
    document = _logical_lines(raw)
    total = sum(len(segment.text) for segment in document.segments)
    if total > max_chars:
        raise DocumentTooLarge(
            f"{path.name} has {total:,} characters of text, over the limit of "
            f"{max_chars:,} characters ({_LIMIT_SETTING})"
        )
    if total == 0 or not any(segment.text.strip() for segment in document.segments):
        raise EmptyDocument(_EMPTY_REASONS.get(kind, f"{kind} file has no text"))
    log.debug("%s: %s, %d segments, %d characters", path.name, kind, len(document.segments), total)
    return document
