"""Format detection costs little whatever the file holds: no bytes can stall it or fill memory.

The HTML check used to be one regex whose comment loop backtracked
exponentially: ``"<!---->" * 25 + "x"`` (177 bytes) held the process, GIL
included, for about 30 s. Every text-shape check in detection (HTML, SRT, mail
headers, CSV) gets adversarial input here, up to the whole 64 KiB head, under a
bound that only a catastrophe exceeds. Real pages must still be HTML. A ZIP
whose [Content_Types].xml expands without end is read only as far as needed.
"""

from __future__ import annotations

import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from core.errors import DocumentTooLarge, UnsupportedFormat
from core.ingest.loaders import detect_kind
from core.ingest.loaders.detect import HEAD_BYTES

# Linear detection takes milliseconds; the old regex took seconds at 24 repeats and doubled per repeat.
BOUND_S = 1.0


def _timed_kind(tmp_path: Path, text: str, name: str = "upload") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8")[:HEAD_BYTES])
    start = time.perf_counter()
    kind = detect_kind(path)
    elapsed = time.perf_counter() - start
    assert elapsed < BOUND_S, f"detecting {len(text)} bytes took {elapsed:.2f} s"
    return kind


def _fill(unit: str, tail: str = "x") -> str:
    """``unit`` repeated to fill the 64 KiB head, then ``tail``."""
    return unit * ((HEAD_BYTES - len(tail)) // len(unit)) + tail


ADVERSARIAL = {
    # The reported attack, and the same shape up to the whole head.
    "empty comments x25": "<!---->" * 25 + "x",
    "empty comments x26 with newline": "<!---->" * 26 + "x\n",
    "empty comments to 64 KiB": _fill("<!---->"),
    "comments with text to 64 KiB": _fill("<!-- a -->"),
    "comments and whitespace to 64 KiB": _fill("<!---->\n\t "),
    "comments ending in a near miss of <html": _fill("<!---->", "<htm"),
    "unclosed comment openers": _fill("<!--"),
    "one comment that never closes": "<!--" + "-" * (HEAD_BYTES - 8),
    "dashes with single closers": _fill("<!--->"),
    "xml declaration then comments": '<?xml version="1.0"?>' + _fill("<!---->"),
    "unclosed xml declarations": _fill("<?xml "),
    "doctype without html": _fill("<!doctype ", "x"),
    # The other text shapes detection checks.
    "srt: number then a line without an arrow": "1\n" + "-" * (HEAD_BYTES - 4),
    "srt: digits without a newline": "1" * (HEAD_BYTES - 1),
    "srt: whitespace then digits": " " * (HEAD_BYTES // 2) + "1" * (HEAD_BYTES // 2 - 1),
    "mail: one header name without a colon": "A" + "a-" * (HEAD_BYTES // 2 - 1),
    "mail: headers without a blank line": _fill("X-Header: value\n"),
    "csv: delimiters everywhere": _fill("a,b;c|d\t" * 8 + "\n"),
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_text_is_detected_without_stalling(tmp_path, text):
    assert _timed_kind(tmp_path, text) in {"text", "csv", "email", "srt"}


def test_html_after_64_kib_of_comments_is_still_found_quickly(tmp_path):
    assert _timed_kind(tmp_path, _fill("<!---->", "<html><body>Hi</body></html>")) == "html"


REAL_PAGES = {
    "doctype": "<!DOCTYPE html>\n<html><head><title>Plan</title></head><body>Q3</body></html>\n",
    "lower-case doctype after blank lines": "\n\n  <!doctype html>\n<html lang='en'><body>x</body></html>",
    "bare html tag": "<html>\n<body><p>Handbook</p></body>\n</html>\n",
    "upper-case HTML with attributes": '<HTML LANG="en">\n<BODY>Policy</BODY></HTML>',
    "xhtml": ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
              '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
              '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Minutes</p></body></html>'),
    "comments first": "<!-- saved from Confluence -->\n<!-- by the exporter -->\n<html><body>Wiki</body></html>",
    "xml declaration, comment, doctype": '<?xml version="1.0"?>\n<!-- export -->\n<!DOCTYPE html>\n<html></html>',
    "comment holding markup": "<!-- <div> old nav </div> -- kept -->\n<html><body>Page</body></html>",
    "byte order mark": "\ufeff<!DOCTYPE html><html><body>BOM</body></html>",
}


@pytest.mark.parametrize("page", REAL_PAGES.values(), ids=REAL_PAGES.keys())
def test_real_html_is_still_html(tmp_path, page):
    assert _timed_kind(tmp_path, page, name="export.txt") == "html"


NOT_HTML = {
    "comment then prose": "<!-- draft --> Notes from the planning meeting\n",
    "comment that never closes before html": "<!-- draft <html><body>x</body></html>",
    "a tag that only starts with html": "<htmlish>not a page</htmlish>\n",
    "prose about html": "The <html> element wraps a page.\n",
}


@pytest.mark.parametrize("text", NOT_HTML.values(), ids=NOT_HTML.keys())
def test_text_that_only_mentions_html_is_not_html(tmp_path, text):
    assert _timed_kind(tmp_path, text, name="notes.txt") == "text"


# --- ZIP parts read by detection -------------------------------------------------------------

WORD_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"


def _bomb(tmp_path: Path, types_start: str) -> Path:
    """A ZIP of under 100 KB whose [Content_Types].xml expands to 32 MB."""
    path = tmp_path / "report.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("[Content_Types].xml", "w") as part:
            part.write(types_start.encode())
            block = b" " * (1 << 20)
            for _ in range(32):
                part.write(block)
        archive.writestr("word/body.xml", "<w:document/>")  # the main part under another name
    assert path.stat().st_size < 100_000
    return path


def _cost(path: Path) -> tuple[str | Exception, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        kind: str | Exception = detect_kind(path)
    except UnsupportedFormat as e:
        kind = e
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return kind, elapsed, peak


def test_a_content_types_bomb_is_read_only_as_far_as_the_type(tmp_path):
    kind, elapsed, peak = _cost(_bomb(tmp_path, f'<Types><Override ContentType="{WORD_TYPE}"/>'))
    assert kind == "docx"
    assert elapsed < BOUND_S and peak < 16 << 20, f"{elapsed:.2f} s, {peak >> 20} MiB"


def test_a_content_types_bomb_without_a_known_type_is_refused_cheaply(tmp_path):
    kind, elapsed, peak = _cost(_bomb(tmp_path, "<Types>"))
    assert isinstance(kind, UnsupportedFormat) and "without Word" in kind.detail
    assert elapsed < BOUND_S and peak < 16 << 20, f"{elapsed:.2f} s, {peak >> 20} MiB"


def test_a_zip_declaring_more_parts_than_any_office_file_is_refused_before_its_directory_is_read(tmp_path):
    path = tmp_path / "parts.docx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
        for i in range(12_000):
            z.writestr(f"p/{i}", b"")
    started = time.perf_counter()
    with pytest.raises(DocumentTooLarge, match="12,001 parts"):
        detect_kind(path)
    assert time.perf_counter() - started < 1.0
