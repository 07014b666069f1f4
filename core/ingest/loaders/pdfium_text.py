"""Page text of a PDF with PDFium (pypdfium2): one string per page, paragraphs split by blank lines.

PDFium lays text out in C and reads a 10-K page in milliseconds, where pypdf
takes tens to hundreds of them. Its text comes as lines (``\\r\\n``) with no blank
line between paragraphs, so paragraphs are found from the lines' positions: a
line that starts more than half a line height below the previous one (or above
it: a new column or text box) begins a paragraph. PDFium writes U+FFFE for a
hyphen it could not map; it is given back as "-".

PDFium is not thread-safe: every call goes through one lock per process (a
loader worker reads one document at a time anyway; this matters only when
documents are read in the service's own process). The caller (core.ingest.loaders.pdf)
has already bounded what the file's content streams inflate to; the sandbox bounds
memory and time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

_LOCK = threading.Lock()
# A gap between two lines wider than this share of a line's height ends a paragraph.
_PARAGRAPH_GAP = 0.5
_LINE = "\r\n"


class PdfiumError(Exception):
    """PDFium could not open the file or read a page."""


def page_texts(path: Path, pages: int) -> Iterator[str | PdfiumError]:
    """The text of each of the first ``pages`` pages, or the error that page raised.

    The document stays open (and the lock held) while the caller consumes the pages.
    """
    import pypdfium2 as pdfium

    with _LOCK:
        try:
            doc = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as e:
            raise PdfiumError(str(e)) from e
        try:
            for index in range(min(pages, len(doc))):
                try:
                    page = doc[index]
                    try:
                        textpage = page.get_textpage()
                        try:
                            text = _paragraphs(textpage)
                        finally:
                            textpage.close()
                    finally:
                        page.close()
                except pdfium.PdfiumError as e:
                    yield PdfiumError(str(e))
                    continue
                yield text
        finally:
            doc.close()


def _paragraphs(textpage) -> str:  # a pypdfium2 PdfTextPage
    """The page's lines, with a blank line where the vertical layout shows a paragraph break."""
    text = textpage.get_text_range().replace("\ufffe", "-")
    lines = text.split(_LINE)
    out: list[str] = []
    previous: tuple[float, float] | None = None  # (bottom, top) of the previous line with text
    offset = 0  # index of the line's first character in PDFium's character list (UTF-16 units)
    for line in lines:
        box = _line_box(textpage, line, offset)
        if box is not None:
            if previous is not None and out and _starts_paragraph(previous, box):
                out.append("")
            previous = box
        out.append(line)
        offset += len(line.encode("utf-16-le")) // 2 + len(_LINE)
    return "\n".join(out)


def _line_box(textpage, line: str, offset: int) -> tuple[float, float] | None:
    """(bottom, top) of the line's first visible character, from its font's ascent and descent."""
    stripped = line.lstrip()
    if not stripped:
        return None
    index = offset + len(line[: len(line) - len(stripped)].encode("utf-16-le")) // 2
    try:
        _left, bottom, _right, top = textpage.get_charbox(index, loose=True)
    except Exception:  # noqa: BLE001 - an index PDFium does not know: no layout hint for this line
        return None
    if top <= bottom:
        return None
    return bottom, top


def _starts_paragraph(previous: tuple[float, float], current: tuple[float, float]) -> bool:
    prev_bottom, prev_top = previous
    bottom, top = current
    height = max(prev_top - prev_bottom, top - bottom)
    if top > prev_top + height * _PARAGRAPH_GAP:  # back up the page: another column or box
        return True
    return prev_bottom - top > height * _PARAGRAPH_GAP
