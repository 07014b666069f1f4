"""Plain-text loading and the byte-to-str decoding every text format shares.

``decode_text`` honours a BOM, then tries UTF-8, then asks charset_normalizer for
its best guess, and refuses content that does not decode to plausible text.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

import charset_normalizer

from core.errors import UnsupportedFormat
from core.models import LoadedDocument, Segment
from core.textutil import reflow

log = logging.getLogger(__name__)

# UTF-32 LE's BOM begins with UTF-16 LE's, so the longer BOMs are tried first.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# charset_normalizer ranks sibling Latin code pages (cp1250, cp1257, cp1252 ...)
# almost equally on short text and often tops the list with the wrong one, which
# turns "crème" into "črčme". Files from Western-locale Windows/Office are cp1252,
# so it wins whenever it is among the near-best candidates.
_PREFERRED_LEGACY = "cp1252"
_NEAR_BEST_CHAOS = 0.1

# Above this share of control characters the "text" is binary that happened to decode.
_MAX_CONTROL_RATIO = 0.01
# Unicode category Cc minus the whitespace controls and ESC (ANSI colours in logs).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


def decode_text(data: bytes, *, partial: bool = False) -> str:
    """Decode file bytes to text, or raise UnsupportedFormat when they are not text.

    ``partial`` says ``data`` is the head of a longer file, so a multi-byte
    character cut at the end is not an error.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(_decode(data, encoding, partial), encoding)
    if b"\x00" in data:
        raise UnsupportedFormat("binary content (contains NUL bytes), not a text document")
    try:
        return _checked(_decode(data, "utf-8", partial), "utf-8")
    except UnicodeDecodeError:
        pass
    encoding = _guess_legacy_encoding(data)
    try:
        text = _decode(data, encoding, partial)
    except (UnicodeDecodeError, LookupError) as e:
        raise UnsupportedFormat(f"could not decode text as {encoding}: {e}") from e
    log.debug("decoded text as %s", encoding)
    return _checked(text, encoding)


def read_text(path: Path) -> str:
    """Read a whole file and decode it with ``decode_text``."""
    return decode_text(path.read_bytes())


def load(path: Path) -> LoadedDocument:
    """One segment per logical line (wrapped prose rejoined); the chunker splits overlong ones later."""
    text = read_text(path)
    segments = [Segment(text=line) for line in reflow(text)]
    return LoadedDocument(kind="text", segments=segments)


def _decode(data: bytes, encoding: str, partial: bool) -> str:
    if not partial:
        return data.decode(encoding)
    # An incremental decoder keeps a trailing, incomplete character instead of failing.
    return codecs.getincrementaldecoder(encoding)().decode(data, final=False)


def _guess_legacy_encoding(data: bytes) -> str:
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise UnsupportedFormat("not a text document: no plausible text encoding")
    best_chaos = matches[0].chaos
    for match in matches:
        if match.chaos > best_chaos + _NEAR_BEST_CHAOS:
            break
        if _PREFERRED_LEGACY in match.could_be_from_charset:
            try:
                data.decode(_PREFERRED_LEGACY)
            except UnicodeDecodeError:
                break
            return _PREFERRED_LEGACY
    return matches[0].encoding


def _checked(text: str, encoding: str) -> str:
    if not text:
        return text
    controls = len(_CONTROL.findall(text))
    if controls / len(text) > _MAX_CONTROL_RATIO:
        raise UnsupportedFormat(
            f"binary content (decodes as {encoding} but is full of control characters), "
            "not a text document"
        )
    return text
