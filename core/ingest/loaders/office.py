"""Office Open XML loading: Word (.docx), PowerPoint (.pptx) and Excel (.xlsx).

Word text is located by the heading it sits under, slides by their 1-based
number, spreadsheet rows by their sheet name.

Before any library parses the package, ``check_package`` refuses what would make
parsing cost far more than the text can be worth: a ZIP central directory with
more parts than any Office file has, XML parts that inflate beyond what
``max_chars`` characters of text need or at ratios only a decompression bomb
has, and XML parts that declare a DTD (entity expansion, external entities),
which Office never writes. The ZIP reader itself never inflates a part past
its declared size (a part that holds more fails its CRC check), so checking the
declared sizes bounds the real work. Text is counted as it is extracted, and
extraction stops as soon as it passes ``max_chars``.
"""

from __future__ import annotations

import logging
import re
import struct
import zipfile
import zlib
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

# Package limits. Real Office XML carries well under 32 bytes of markup per
# character of text, and compresses 5-30 times; a bomb compresses hundreds of
# times. Small parts may compress as well as they like: they cannot cost much.
MAX_PARTS = 10_000
MAX_RATIO = 100
RATIO_FLOOR = 4 << 20
XML_BYTES_PER_CHAR = 32
MIN_XML_PART = 64 << 20
_PROLOG_MAX = 1 << 20  # bytes of an XML part read to find where its first element starts
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_MB = 1 << 20


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


# -- the package check ------------------------------------------------------------------------


def check_package(path: Path, kind: str, max_chars: int = _DEFAULT_MAX_CHARS) -> None:
    """Refuse a package whose parsing would cost far more than its text is worth (see the module doc)."""
    name = kind.upper()
    with path.open("rb") as f:
        declared = _declared_parts(f)
        if declared is not None and declared > MAX_PARTS:
            raise DocumentTooLarge(f"{name} file has {declared:,} parts, more than the {MAX_PARTS:,} an "
                                   "Office file can plausibly need")
        try:
            with zipfile.ZipFile(f) as package:
                _check_parts(package, name, max_chars)
        except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, struct.error) as e:
            raise CorruptDocument(f"{name} file is not a valid ZIP package ({_first_line(e)})") from e


def _check_parts(package: zipfile.ZipFile, name: str, max_chars: int) -> None:
    infos = package.infolist()
    if len(infos) > MAX_PARTS:
        raise DocumentTooLarge(f"{name} file has {len(infos):,} parts, more than the {MAX_PARTS:,} an "
                               "Office file can plausibly need")
    part_limit = max(MIN_XML_PART, XML_BYTES_PER_CHAR * max_chars)
    total_limit = 2 * part_limit
    total = 0
    for info in infos:
        part = _shown(info.filename)
        if info.flag_bits & 0x1:
            raise CorruptDocument(f"{name} file has an encrypted part ({part}); Office packages never do")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CorruptDocument(f"{name} file compresses part {part} with a method Office never uses")
        total += info.file_size
        if total > total_limit:
            raise DocumentTooLarge(f"{name} file would expand to over {total_limit // _MB} MB, more than "
                                   f"{max_chars:,} characters of text can need ({_CHARS_SETTING})")
        if not info.filename.lower().endswith(_XML_SUFFIXES) and info.filename != "[Content_Types].xml":
            continue  # media and other binary parts are copied, never parsed
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise DocumentTooLarge(
                f"{name} part {part} would expand from {info.compress_size / _MB:.1f} MB to "
                f"{info.file_size / _MB:.0f} MB ({ratio:,} times): refused as a decompression bomb")
        if info.file_size > part_limit:
            raise DocumentTooLarge(f"{name} part {part} holds {info.file_size / _MB:.0f} MB of XML, more than "
                                   f"{max_chars:,} characters of text can need ({_CHARS_SETTING})")
        if info.file_size and _declares_dtd(package, info):
            raise CorruptDocument(f"{name} part {part} declares a DTD (XML entities) or starts in a way "
                                  "Office files never do; refused as unsafe to parse")


def _declared_parts(f) -> int | None:  # noqa: ANN001 - a binary file
    """The number of parts the ZIP's end record declares, read before the central directory is."""
    f.seek(0, 2)
    size = f.tell()
    tail_at = max(0, size - (1 << 16) - 22)
    f.seek(tail_at)
    tail = f.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return None  # not a ZIP: zipfile says so
    parts = struct.unpack_from("<H", tail, end + 10)[0]
    locator = end - 20
    if parts == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        zip64_end = struct.unpack_from("<Q", tail, locator + 8)[0]
        f.seek(zip64_end)
        record = f.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            parts = struct.unpack_from("<Q", record, 32)[0]
    return parts


def _declares_dtd(package: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether an XML part has a DOCTYPE before its first element (or no element within reach)."""
    head = b""
    with package.open(info) as part:
        while len(head) < _PROLOG_MAX:
            block = part.read(1 << 16)
            head += block
            verdict = _prolog_verdict(head, at_end=not block)
            if verdict is not None:
                return verdict
    return True  # a megabyte without reaching the first element: not something Office writes


def _prolog_verdict(head: bytes, *, at_end: bool) -> bool | None:
    """True: a DTD (or unreadable prolog); False: the first element starts first; None: read more.

    NUL bytes are dropped so UTF-16/32 markup reads as ASCII; a part that does not
    start with ``<`` after its byte-order mark is in no encoding Office writes.
    """
    text = head.replace(b"\x00", b"")
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        text = text.removeprefix(bom)
    text = text.lstrip()
    if not text:
        return None if not at_end else False
    if not text.startswith(b"<"):
        return True
    i = 0
    while True:
        j = text.find(b"<", i)
        if j < 0 or (len(text) - j < 4 and not at_end):
            return False if at_end else None
        if text.startswith(b"<?", j):
            end, skip = text.find(b"?>", j + 2), 2
        elif text.startswith(b"<!--", j):
            end, skip = text.find(b"-->", j + 4), 3
        else:
            return text.startswith(b"<!", j)
        if end < 0:
            return True if at_end else None
        i = end + skip


def _shown(name: str) -> str:
    """A part name as it may appear in a message: printable, short."""
    name = re.sub(r"[^\w./\[\]-]", "?", name)
    return name if len(name) <= 80 else name[:77] + "..."


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
