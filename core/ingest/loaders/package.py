"""Office Open XML packages checked before any library parses them.

A package is refused when parsing it would cost far more than its text can be worth:
a ZIP central directory with more parts than any Office file has (counted from the
end record, before the directory is read), XML parts that inflate beyond what
``max_chars`` characters of text need or at ratios only a decompression bomb has,
encrypted parts or compression methods Office never uses, and XML parts that
declare a DTD (entity expansion, external entities), which Office never writes. The
ZIP reader never inflates a part past its declared size (a part that holds more
fails its CRC check), so checking the declared sizes bounds the real work.

No Office library is imported here: detection uses ``declared_parts`` in the service
process, and the loaders run ``check_package`` in their sandboxed worker.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from core.errors import CorruptDocument, DocumentTooLarge

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


def _declared_parts(f: BinaryIO) -> int | None:
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


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def declared_parts(path: Path) -> int | None:
    """How many parts the ZIP at ``path`` says it holds (None: no end record found)."""
    with path.open("rb") as f:
        return _declared_parts(f)
