"""Office Open XML loading: Word (.docx), PowerPoint (.pptx) and Excel (.xlsx).

Word text is located by the heading it sits under, slides by their 1-based
number, spreadsheet rows by their sheet name.

Before any library parses the package, ``check_package`` (core.ingest.loaders.package)
refuses what would make parsing cost far more than the text can be worth: too many
parts, decompression bombs, DTDs. Text is counted as it is extracted, and extraction
stops as soon as it passes ``max_chars``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.etree.ElementTree import ParseError

import docx
import openpyxl
import pptx
from docx.document import Document as WordDocument
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml.etree import LxmlError
from openpyxl.utils.exceptions import InvalidFileException
from pptx.exc import PythonPptxError
from pptx.shapes.group import GroupShape

from core.errors import CorruptDocument, DocumentTooLarge
from core.ingest.loaders.package import check_package
from core.ingest.loaders.tabular import render_rows
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

# What the three libraries raise on a damaged package: broken ZIP, missing part,
# malformed XML, or values their parsers choke on.
_OFFICE_FAILURES: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    OpcError,
    PythonPptxError,
    InvalidFileException,
    LxmlError,
    ParseError,  # openpyxl reads sheets with xml.etree (or defusedxml) in read-only mode
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    EOFError,
)
_NOTES_SECTION = "Speaker notes"
_DEFAULT_MAX_CHARS = 5_000_000
_CHARS_SETTING = "IMP_INGEST__MAX_CHARS"



def load_docx(path: Path, *, max_chars: int = _DEFAULT_MAX_CHARS) -> LoadedDocument:
    """Paragraphs and table rows in reading order; ``section`` is the latest heading."""
    check_package(path, "docx", max_chars)
    try:
        document = docx.Document(str(path))
        segments = _within(_docx_segments(document), max_chars, path)
        title = document.core_properties.title or _first_title(document)
    except _OFFICE_FAILURES as e:
        raise _damaged("DOCX", e) from e
    return LoadedDocument(kind="docx", segments=segments, title=_clean(title))


def load_pptx(path: Path, *, max_chars: int = _DEFAULT_MAX_CHARS) -> LoadedDocument:
    """Every shape's text and the speaker notes, per slide (``page`` = slide number)."""
    check_package(path, "pptx", max_chars)
    try:
        presentation = pptx.Presentation(str(path))
        found: dict[str, str | None] = {}
        segments = _within(_pptx_segments(presentation, found), max_chars, path)
        title = found.get("title") or presentation.core_properties.title
    except _OFFICE_FAILURES as e:
        raise _damaged("PPTX", e) from e
    return LoadedDocument(kind="pptx", segments=segments, title=_clean(title))


def load_xlsx(path: Path, *, max_chars: int = _DEFAULT_MAX_CHARS) -> LoadedDocument:
    """Each sheet's rows rendered against its header row; ``section`` is the sheet name."""
    check_package(path, "xlsx", max_chars)
    try:
        # read_only streams rows instead of building every cell object; data_only
        # gives the cached results of formulas rather than the formulas themselves.
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except _OFFICE_FAILURES as e:
        raise _damaged("XLSX", e) from e
    try:
        segments = _within(_xlsx_segments(workbook), max_chars, path)
        title = workbook.properties.title
    except _OFFICE_FAILURES as e:
        raise _damaged("XLSX", e) from e
    finally:
        workbook.close()  # read-only mode keeps the file handle open until closed
    return LoadedDocument(kind="xlsx", segments=segments, title=_clean(title))


def _xlsx_segments(workbook) -> Iterator[Segment]:
    for sheet in workbook.worksheets:
        # Read-only mode trusts the <dimension> the producer wrote, and some
        # tools write "A1" for any size; forgetting it makes every row count.
        sheet.reset_dimensions()
        yield from render_rows(sheet.iter_rows(values_only=True), section=sheet.title)


def _pptx_segments(presentation, found: dict[str, str | None]) -> Iterator[Segment]:
    for number, slide in enumerate(presentation.slides, start=1):
        slide_title = _slide_title(slide)
        if number == 1:
            found["title"] = slide_title
        for text in _slide_texts(slide.shapes):
            yield Segment(text=text, page=number, section=slide_title)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                yield Segment(text=notes.text.strip(), page=number, section=_NOTES_SECTION)


def _within(segments: Iterable[Segment], max_chars: int, path: Path) -> list[Segment]:
    """The segments, stopping as soon as their text is over ``max_chars``."""
    out: list[Segment] = []
    total = 0
    for segment in segments:
        total += len(segment.text)
        if total > max_chars:
            raise DocumentTooLarge(f"{path.name} has more than {max_chars:,} characters of text, over the limit "
                                   f"({_CHARS_SETTING})")
        out.append(segment)
    return out


def _damaged(kind: str, e: BaseException) -> CorruptDocument:
    """A plain reason for what a library raised on a damaged package (its own words only where they help)."""
    if isinstance(e, LxmlError) and "memory allocation failed" in str(e).lower():
        raise MemoryError("the XML parser ran out of memory") from e  # the loader's memory limit, not damage
    if isinstance(e, zipfile.BadZipFile):
        return CorruptDocument(f"{kind} file is not a valid ZIP package ({_first_line(e)})")
    if isinstance(e, KeyError):
        return CorruptDocument(f"{kind} file lacks a part the format requires")
    if isinstance(e, (LxmlError, ParseError)):
        return CorruptDocument(f"{kind} file has malformed XML ({_first_line(e)})")
    if isinstance(e, (OpcError, PythonPptxError, InvalidFileException)):
        return CorruptDocument(f"{kind} file is damaged ({_first_line(e)})")
    log.warning("%s file unreadable: %s: %s", kind, type(e).__name__, e)
    return CorruptDocument(f"{kind} file is damaged or uses a structure IMP cannot read")


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _docx_segments(document: WordDocument) -> Iterator[Segment]:
    section: str | None = None
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            if _is_heading(block):
                section = text
            yield Segment(text=text, section=section)
        elif isinstance(block, Table):
            for line in _table_lines(block):
                yield Segment(text=line, section=section)


def _table_lines(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            yield " | ".join(cells)


def _is_heading(paragraph: Paragraph) -> bool:
    name = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    return name.startswith("heading") or name == "title"


def _first_title(document: WordDocument) -> str | None:
    for paragraph in document.paragraphs:
        if paragraph.style is not None and (paragraph.style.name or "").lower() == "title":
            return paragraph.text
    return None


def _slide_title(slide) -> str | None:
    shape = slide.shapes.title
    if shape is None or not shape.has_text_frame:
        return None
    return _clean(shape.text_frame.text)


def _slide_texts(shapes) -> Iterator[str]:
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _slide_texts(shape.shapes)
        elif shape.has_text_frame:
            text = shape.text_frame.text.strip()
            if text:
                yield text
        elif shape.has_table:
            for row in shape.table.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                if any(cells):
                    yield " | ".join(cells)


def _clean(title: str | None) -> str | None:
    if title is None:
        return None
    title = " ".join(title.split())
    return title or None
