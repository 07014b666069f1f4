"""HTML and Markdown loading: block-level text, with headings as the ``section``.

HTML is parsed by lxml (libxml2), which reads any markup in linear time; the stdlib's
``html.parser`` rescans from every unclosed tag, so 100 KB of ``<a b=`` took over two minutes.
Markdown is read line by line, without a regex that could backtrack over a long line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, ParserRejectedMarkup, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from core.errors import CorruptDocument
from core.ingest.loaders.text import read_text
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

# <head> goes too: its <title> is read separately and the rest is not prose.
_DROPPED_TAGS = ("script", "style", "noscript", "template", "head")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK_TAGS = _HEADINGS | frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_NON_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)

_ATX_OPENING = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")


def html_segments(markup: str | bytes) -> tuple[list[Segment], str | None]:
    """Text per block element of an HTML page, and the page's <title>.

    Bytes are passed through so BeautifulSoup can honour a ``<meta charset>``.
    """
    try:
        soup = BeautifulSoup(markup, "lxml")
    except (ValueError, TypeError, AssertionError, ParserRejectedMarkup) as e:
        raise CorruptDocument(f"HTML cannot be parsed: {e}") from e
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")  # "a<br>b" is two words, not "ab"
    segments: list[Segment] = []
    section: str | None = None
    for block, text in _block_texts(soup):
        if block is not None and block.name in _HEADINGS:
            section = text
        segments.append(Segment(text=text, section=section))
    return segments, title or None


def load_html(path: Path) -> LoadedDocument:
    segments, title = html_segments(path.read_bytes())
    return LoadedDocument(kind="html", segments=segments, title=title)


def load_markdown(path: Path) -> LoadedDocument:
    """One segment per paragraph or list item; ``#`` and underlined headings set ``section``."""
    segments: list[Segment] = []
    title: str | None = None
    section: str | None = None
    paragraph: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(paragraph).strip()
        paragraph.clear()
        if text:
            segments.append(Segment(text=text, section=section))

    for line in read_text(path).splitlines():
        if _FENCE.match(line):
            flush()  # a code block is a segment of its own
            in_fence = not in_fence
            continue
        if in_fence:
            paragraph.append(line)
            continue
        heading = _atx_heading(line)
        setext = _SETEXT_UNDERLINE.match(line) if len(paragraph) == 1 else None
        if heading or setext:
            if heading:
                flush()
                level, text = heading
            else:
                text, level = paragraph.pop().strip(), 1 if setext.group(1)[0] == "=" else 2
            if not text:
                continue
            section = text
            title = title or (text if level == 1 else None)
            segments.append(Segment(text=text, section=section))
        elif not line.strip() or _THEMATIC_BREAK.match(line):
            flush()
        else:
            if _LIST_ITEM.match(line):
                flush()
            paragraph.append(line)
    flush()
    return LoadedDocument(kind="markdown", segments=segments, title=title)


def _atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of a ``# Heading #`` line, its optional closing hashes dropped; None for other lines.

    A scan, not one regex: the lazy text before optional closing hashes and spaces was retried at
    every space of a long line (a 40 KB heading line took 49 s).
    """
    opening = _ATX_OPENING.match(line)
    if opening is None:
        return None
    text = line[opening.end():].strip(" \t")
    bare = text.rstrip("#")
    if bare != text and bare[-1:] in (" ", "\t"):  # closing hashes count only after a space
        text = bare.rstrip(" \t")
    return len(opening.group(1)), text


def _block_texts(soup: BeautifulSoup) -> Iterator[tuple[Tag | None, str]]:
    """Group the page's strings by their nearest block ancestor, in document order."""
    current: Tag | None = None
    parts: list[str] = []
    last_cell: Tag | None = None
    for string in soup.find_all(string=True):
        if isinstance(string, _NON_TEXT) or not isinstance(string, NavigableString):
            continue
        block, cell = _containers(string)
        if block is not current:
            text = " ".join("".join(parts).split())
            if text:
                yield current, text
            current, parts, last_cell = block, [], None
        if cell is not None and last_cell is not None and cell is not last_cell:
            parts.append(" | ")
        last_cell = cell or last_cell
        parts.append(str(string))
    text = " ".join("".join(parts).split())
    if text:
        yield current, text


def _containers(string: NavigableString) -> tuple[Tag | None, Tag | None]:
    cell: Tag | None = None
    for parent in string.parents:
        if parent.name in _CELL_TAGS and cell is None:
            cell = parent
        if parent.name in _BLOCK_TAGS:
            return parent, cell
    return None, cell
