"""Content-first detection of a file's format.

Only the head of the file (and a ZIP's central directory) is read. Magic bytes
and container layout decide binary formats; the shape of the decoded text
decides text formats; the extension only breaks ties between text formats, so a
PDF named ``report.txt`` is still a PDF.
"""

from __future__ import annotations

import logging
import re
import stat
import zipfile
from pathlib import Path

from core.errors import CorruptDocument, EmptyDocument, NotFound, UnsupportedFormat
from core.ingest.loaders.text import decode_text

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024

# Formats people drop into a channel that are not text documents. Checked before
# the text sniffing so that a PNG is named as such rather than as "binary junk".
_FOREIGN_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"\x7fELF", 0, "an executable (ELF)"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"SQLite format 3\x00", 0, "a SQLite database"),
    (b"{\\rtf", 0, "an RTF document (save it as .docx or PDF)"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        0,
        "a legacy Office file (.doc/.xls/.ppt; save it as .docx/.xlsx/.pptx)",
    ),
)
# Magic too short to trust alone: a text file may begin "MZ"; the binary
# format always carries NUL bytes right after it.
_SHORT_MAGIC = ((b"MZ", "an executable (Windows)"),)
_RIFF_KINDS = {b"WEBP": "a WebP image"}

# Audio and video containers, all decoded by ffmpeg (see core.ingest.media).
MEDIA = "media"
# Each magic is followed by bytes that text never has (a version byte, a binary length),
# so notes that merely start with "fLaC is a codec" or "caffeine" stay text.
_MEDIA_MAGIC: tuple[bytes, ...] = (
    b"OggS\x00",  # Ogg Vorbis / Opus, stream structure version 0
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM (EBML)
    b"#!AMR\n",
    b"#!AMR-WB\n",
    b"caff\x00\x01",  # Core Audio, version 1
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF: WMA / WMV
)
_RIFF_MEDIA = frozenset({b"WAVE", b"AVI "})
# MPEG audio frame sync (MP3 without an ID3 tag) and ADTS AAC.
_FRAME_SYNC = (b"\xff\xfb", b"\xff\xfa", b"\xff\xf3", b"\xff\xf2", b"\xff\xe3", b"\xff\xf1", b"\xff\xf9")

# Office Open XML: the main part's usual name, then its content type for files
# whose producer named the part differently.
_OOXML_PARTS = (
    ("word/document.xml", "docx"),
    ("ppt/presentation.xml", "pptx"),
    ("xl/workbook.xml", "xlsx"),
)
_OOXML_TYPES = (
    ("wordprocessingml.document.main+xml", "docx"),
    ("wordprocessingml.template.main+xml", "docx"),
    ("ms-word.document.macroenabled.main+xml", "docx"),
    ("presentationml.presentation.main+xml", "pptx"),
    ("presentationml.slideshow.main+xml", "pptx"),
    ("ms-powerpoint.presentation.macroenabled.main+xml", "pptx"),
    ("spreadsheetml.sheet.main+xml", "xlsx"),
    ("spreadsheetml.template.main+xml", "xlsx"),
    ("ms-excel.sheet.macroenabled.main+xml", "xlsx"),
)

_SRT_SHAPE = re.compile(r"\A\s*\d+[ \t]*\r?\n[^\n]*-->")
_HTML_SHAPE = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]")
_EMAIL_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "date", "received", "message-id", "mime-version", "return-path"}
)
# Without one of these, "Subject: …\nDate: …" is as likely to be notes as mail.
_EMAIL_ONLY_HEADERS = frozenset({"from", "received", "message-id", "mime-version", "return-path"})

_TEXT_EXTENSIONS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".tsv": "csv",
    ".htm": "html",
    ".html": "html",
    ".eml": "email",
    ".vtt": "vtt",
    ".srt": "srt",
}
# Extensions that say "plain text" outright and so are never sniffed as CSV.
_PLAIN_EXTENSIONS = frozenset({".txt", ".text", ".log"})
# Minimum per-line count for each delimiter: one comma per line is common in prose.
_CSV_DELIMITERS = ((",", 2), ("\t", 1), (";", 1), ("|", 1))


def detect_kind(path: Path) -> str:
    """Return the loader kind for ``path``, judged by content first."""
    head = _read_head(path)
    kind = _binary_kind(path, head)
    if kind is None:
        kind = _text_kind(path, head)
    log.debug("detected %s as %s", path.name, kind)
    return kind


def _read_head(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UnsupportedFormat(f"{path.name} is a directory, not a file")
        # A FIFO or device would block open() or read forever; only regular files are documents.
        if not stat.S_ISREG(mode):
            raise UnsupportedFormat(f"{path.name} is not a regular file (a pipe, socket or device)")
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except FileNotFoundError as e:
        raise NotFound(f"no such file: {path}") from e
    if not head:
        raise EmptyDocument(f"{path.name} is empty (0 bytes)")
    return head


def _binary_kind(path: Path, head: bytes) -> str | None:
    # The PDF spec lets the header sit anywhere in the first 1024 bytes.
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path, head)
    if _is_media(head):
        return MEDIA
    for magic, offset, what in _FOREIGN_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedFormat(f"{path.name} is {what}, not a supported document")
    for magic, what in _SHORT_MAGIC:
        if head.startswith(magic) and b"\x00" in head[:64]:
            raise UnsupportedFormat(f"{path.name} is {what}, not a supported document")
    if head.startswith(b"RIFF") and head[8:12] in _RIFF_KINDS:
        what = _RIFF_KINDS[head[8:12]]
        raise UnsupportedFormat(f"{path.name} is {what}, not a supported document")
    return None


def _is_media(head: bytes) -> bool:
    if head.startswith(_MEDIA_MAGIC):
        return True
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] in _RIFF_MEDIA:
        return True
    # FLAC: the first metadata block is STREAMINFO (type 0), 34 bytes long.
    if head.startswith(b"fLaC") and head[4] & 0x7F == 0 and head[5:8] == b"\x00\x00\x22":
        return True
    # MP4/MOV/M4A/3GP: a first box of plausible binary size whose type is "ftyp" (or a bare QuickTime atom).
    size = int.from_bytes(head[:4], "big")
    if 8 <= size <= 4096 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return True
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC") and b"COMM" in head[12:128]:
        return True
    # An ID3v2 tag: version 2-4, revision, flags, then a syncsafe size (high bits clear).
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4) and head[4] < 0xFF \
            and all(b < 0x80 for b in head[6:10]):
        return True
    return head[:2] in _FRAME_SYNC


def _zip_kind(path: Path, head: bytes) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for part, kind in _OOXML_PARTS:
                if part in names:
                    return kind
            if "[Content_Types].xml" in names:
                types = archive.read("[Content_Types].xml").decode("utf-8", "replace").lower()
                for marker, kind in _OOXML_TYPES:
                    if marker in types:
                        return kind
            if "mimetype" in names and b"opendocument" in archive.read("mimetype"):
                raise UnsupportedFormat(
                    f"{path.name} is an OpenDocument file; save it as .docx, .xlsx or .pptx"
                )
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
        # The central directory sits at the end, so a truncated upload lands here;
        # the part names in the local headers still say what it was meant to be.
        for part, kind in _OOXML_PARTS:
            if part.split("/")[0].encode() + b"/" in head:
                raise CorruptDocument(f"{kind.upper()} file is damaged or truncated: {e}") from e
        raise UnsupportedFormat(f"{path.name} is a damaged ZIP archive, not a document") from e
    raise UnsupportedFormat(
        f"{path.name} is a ZIP archive without Word, PowerPoint or Excel content"
    )


def _text_kind(path: Path, head: bytes) -> str:
    text = decode_text(head, partial=True).lstrip("\ufeff")
    if text.startswith("WEBVTT") and (len(text) == 6 or text[6] in " \t\r\n"):
        return "vtt"
    if _SRT_SHAPE.match(text):
        return "srt"
    if _HTML_SHAPE.match(text):
        return "html"
    if _looks_like_email(text):
        return "email"
    suffix = path.suffix.lower()
    if suffix in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[suffix]
    if suffix not in _PLAIN_EXTENSIONS and _looks_like_csv(text):
        return "csv"
    return "text"


def _looks_like_email(text: str) -> bool:
    lines = text.splitlines()
    if lines and lines[0].startswith("From "):  # mbox envelope line
        lines = lines[1:]
    names: set[str] = set()
    for line in lines:
        if not line.strip():
            break
        if line[0] in " \t" and names:  # folded continuation of the previous header
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        names.add(match.group(1).lower())
    known = names & _EMAIL_HEADERS
    return len(known) >= 2 and bool(known & _EMAIL_ONLY_HEADERS)


def _looks_like_csv(text: str) -> bool:
    """Only a clear table counts: several lines, same delimiter count on each."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) < 3:
        return False
    if len(text) >= HEAD_BYTES // 2:
        lines = lines[:-1]  # the last line of a head may be cut short
    for delimiter, minimum in _CSV_DELIMITERS:
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() >= minimum:
            return True
    return False
