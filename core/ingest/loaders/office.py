"""Office Open XML loading: Word (.docx), PowerPoint (.pptx) and Excel (.xlsx).

Word text is located by the heading it sits under, slides by their 1-based
number, spreadsheet rows by their sheet name.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

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

from core.errors import CorruptDocument
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
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    EOFError,
)
_NOTES_SECTION = "Speaker notes"


def load_docx(path: Path) -> LoadedDocument:
    """Paragraphs and table rows in reading order; ``section`` is the latest heading."""
    try:
        document = docx.Document(str(path))
        segments = list(_docx_segments(document))
        title = document.core_properties.title or _first_title(document)
    except _OFFICE_FAILURES as e:
        raise CorruptDocument(f"DOCX file is damaged: {e}") from e
    return LoadedDocument(kind="docx", segments=segments, title=_clean(title))


def load_pptx(path: Path) -> LoadedDocument:
    """Every shape's text and the speaker notes, per slide (``page`` = slide number)."""
    try:
        presentation = pptx.Presentation(str(path))
        segments: list[Segment] = []
        title: str | None = None
        for number, slide in enumerate(presentation.slides, start=1):
            slide_title = _slide_title(slide)
            if number == 1:
                title = slide_title
            for text in _slide_texts(slide.shapes):
                segments.append(Segment(text=text, page=number, section=slide_title))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    segments.append(
                        Segment(text=notes.text.strip(), page=number, section=_NOTES_SECTION)
                    )
        title = title or presentation.core_properties.title
    except _OFFICE_FAILURES as e:
        raise CorruptDocument(f"PPTX file is damaged: {e}") from e
    return LoadedDocument(kind="pptx", segments=segments, title=_clean(title))


def load_xlsx(path: Path) -> LoadedDocument:
    """Each sheet's rows rendered against its header row; ``section`` is the sheet name."""
    try:
        # read_only streams rows instead of building every cell object; data_only
        # gives the cached results of formulas rather than the formulas themselves.
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except _OFFICE_FAILURES as e:
        raise CorruptDocument(f"XLSX file is damaged: {e}") from e
    try:
        segments: list[Segment] = []
        for sheet in workbook.worksheets:
            # Read-only mode trusts the <dimension> the producer wrote, and some
            # tools write "A1" for any size; forgetting it makes every row count.
            sheet.reset_dimensions()
            segments.extend(render_rows(sheet.iter_rows(values_only=True), section=sheet.title))
        title = workbook.properties.title
    except _OFFICE_FAILURES as e:
        raise CorruptDocument(f"XLSX file is damaged: {e}") from e
    finally:
        workbook.close()  # read-only mode keeps the file handle open until closed
    return LoadedDocument(kind="xlsx", segments=segments, title=_clean(title))


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
