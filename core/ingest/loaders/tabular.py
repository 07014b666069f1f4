"""CSV loading and the row rendering shared with spreadsheets.

A row becomes one line, ``Header1: v1; Header2: v2``, so that each value keeps
the column name it means something under when the row is retrieved on its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import CorruptDocument
from core.ingest.loaders.text import read_text
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

# csv.Sniffer guesses the quote character with regexes that rescan the rest of the sample from every
# quote (``.*?`` over DOTALL): quadratic, so 16 KB of lines holding only '"' took 16 s, and the 64 KB
# sample minutes. A few KB (the csv docs sniff 1 KB) holds enough rows to tell the dialect and caps that work.
_SNIFF_SAMPLE = 2 * 1024
_DELIMITERS = ",;\t|"


def cell_text(value: object) -> str:
    """A cell as a person would read it: no ``3.0`` for 3, ISO dates, no padding."""
    if isinstance(value, str):  # the common case first: CSV cells are all strings
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


def render_rows(rows: Iterable[Sequence[object]], section: str | None = None) -> list[Segment]:
    """One segment per non-empty row, labelled by the first non-empty row (the header)."""
    header: list[str] | None = None
    segments: list[Segment] = []
    for row in rows:
        cells = [cell_text(value) for value in row]
        if not any(cells):
            continue
        if header is None:
            header = cells
            continue
        parts = [
            f"{_column_name(header, i)}: {value}" for i, value in enumerate(cells) if value
        ]
        segments.append(Segment(text="; ".join(parts), section=section))
    if header is not None and not segments:
        # A header-only table still carries words someone may search for.
        segments.append(Segment(text=" | ".join(c for c in header if c), section=section))
    return segments


def load(path: Path) -> LoadedDocument:
    """Parse a CSV/TSV file with a sniffed dialect and render each row."""
    text = read_text(path)
    dialect = _sniff(text, path)
    try:
        # newline="" keeps line breaks inside quoted fields as part of the value.
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as e:
        raise CorruptDocument(f"CSV cannot be parsed: {e}") from e
    return LoadedDocument(kind="csv", segments=render_rows(rows))


def _sniff(text: str, path: Path) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:_SNIFF_SAMPLE]
    if len(text) > _SNIFF_SAMPLE and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut last row would skew the guess
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        # The sniffer gives up on one-column files and on some quoting; the
        # extension is then the best evidence left.
        log.debug("%s: CSV dialect not sniffed, using the extension", path.name)
        return csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel


def _column_name(header: list[str], index: int) -> str:
    if index < len(header) and header[index]:
        return header[index]
    return f"Column {index + 1}"
