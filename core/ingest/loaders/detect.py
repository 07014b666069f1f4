"""Content-first detection of a file's format.

Only the head of the file (and a ZIP's central directory) is read. Magic bytes
and container layout decide binary formats; the shape of the decoded text
decides text formats; the extension only breaks ties between text formats, so a
PDF named ``report.txt`` is still a PDF.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path

from core.errors import CorruptDocument, DocumentTooLarge, EmptyDocument, NotFound, UnsupportedFormat
from core.ingest.loaders.package import MAX_PARTS, declared_parts
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
# ffmpeg's demuxer for each container, named as `ffmpeg -demuxers` lists it. core.ingest.media
# forces this demuxer and allows no other: ffmpeg's own probing would also pick playlists (hls),
# scripts (concat) or manifests (dash, imf) that open further files, whatever the file is called.
MOV_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
# Each magic is followed by bytes that text never has (a version byte, a binary length),
# so notes that merely start with "fLaC is a codec" or "caffeine" stay text.
_MEDIA_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"OggS\x00", "ogg"),  # Ogg Vorbis / Opus, stream structure version 0
    (b"\x1a\x45\xdf\xa3", "matroska,webm"),  # Matroska / WebM (EBML)
    (b"#!AMR\n", "amr"),
    (b"#!AMR-WB\n", "amr"),
    (b"caff\x00\x01", "caf"),  # Core Audio, version 1
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),  # ASF: WMA / WMV
    (b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00", "w64"),  # Sony Wave64's RIFF GUID
)
_RIFF_MEDIA = {b"WAVE": "wav", b"AVI ": "avi"}
# MPEG audio frame sync (MP3 without an ID3 tag), and ADTS AAC.
_MPEG_SYNC = (b"\xff\xfb", b"\xff\xfa", b"\xff\xf3", b"\xff\xf2", b"\xff\xe3")
_ADTS_SYNC = (b"\xff\xf1", b"\xff\xf9")
# How much of what follows an ID3 tag (or a frame sync) is looked at to tell audio from text.
_SNIFF_BYTES = 256
# ffmpeg skips any number of ID3v2 tags in a row; a file starting with this many is not a recording.
_MAX_ID3_TAGS = 8

# Office Open XML: the main part's usual name, then its content type for files
# whose producer named the part differently.
_OOXML_PARTS = (
    ("word/document.xml", "docx"),
    ("ppt/presentation.xml", "pptx"),
    ("xl/workbook.xml", "xlsx"),
)
# Real [Content_Types].xml parts are a few KB; reading is stopped here, however far the part expands.
_CONTENT_TYPES_BYTES = 1 << 20
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
# HTML is found by a scan (see _looks_like_html), never by one regex over the comments before
# <html>: "(?:<!--.*?-->\s*)*" backtracks exponentially ("<!---->" * 25 + "x" took 30 s). The
# regexes below are matched at one position each, and no quantifier in them can overlap another.
_SPACE = re.compile(r"\s*")
_HTML_START = re.compile(r"<(?:!doctype\s+html|html[\s>])", re.IGNORECASE)
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
        # A device or FIFO is refused without being opened (opening some devices acts on them),
        # and again on the open descriptor in case the name was swapped in between. O_NONBLOCK:
        # opening a FIFO without a writer would otherwise block for ever.
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            _refuse_irregular(path, mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise NotFound(f"no such file: {path.name}") from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        _refuse_irregular(path, mode)
    with os.fdopen(fd, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise EmptyDocument(f"{path.name} is empty (0 bytes)")
    return head


def _refuse_irregular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise UnsupportedFormat(f"{path.name} is a directory, not a file")
    # A FIFO or device would block read() or never end; only regular files are documents.
    raise UnsupportedFormat(f"{path.name} is not a regular file (a pipe, socket or device)")


def _binary_kind(path: Path, head: bytes) -> str | None:
    # The PDF spec lets the header sit anywhere in the first 1024 bytes.
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path, head)
    if _media_demuxer(path, head) is not None:
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


def media_demuxer(path: Path) -> str | None:
    """The ffmpeg demuxer that reads the recording at ``path``, judged by its content alone.

    None when the content is no recording this module recognises. Raises
    UnsupportedFormat for what is not a regular file and for an audio tag or
    frame header in front of text: a playlist or script dressed as an MP3.
    """
    return _media_demuxer(path, _read_head(path))


def _media_demuxer(path: Path, head: bytes) -> str | None:
    offset, window = 0, head
    for _ in range(_MAX_ID3_TAGS):
        size = _id3_size(window)
        if size is None:
            break
        offset += size
        window = head[offset:] if len(head) - offset >= _SNIFF_BYTES else _bytes_at(path, offset, _SNIFF_BYTES)
    else:
        raise UnsupportedFormat(f"{path.name} holds nothing but audio tags, not a recording")
    if offset == 0:
        return _container(path, head)
    # Taggers pad the tag with NUL bytes; some leave more padding than the tag's size says.
    after = window.lstrip(b"\x00")
    if not after:
        return "mp3"  # a tag and nothing else: ffmpeg reports that there is no audio
    found = _container(path, after)
    if found is not None:
        return found
    if _looks_like_text(after[:_SNIFF_BYTES]):
        raise UnsupportedFormat(
            f"{path.name} starts with an audio tag but holds text (a playlist or script?), not a recording"
        )
    # MP3 encoders may leave junk between the tag and the first frame; ffmpeg's mp3 demuxer resyncs.
    return "mp3"


def _container(path: Path, head: bytes) -> str | None:
    for magic, demuxer in _MEDIA_MAGIC:
        if head.startswith(magic):
            return demuxer
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] in _RIFF_MEDIA:
        return _RIFF_MEDIA[head[8:12]]
    # FLAC: the first metadata block is STREAMINFO (type 0), 34 bytes long.
    if head.startswith(b"fLaC") and len(head) >= 8 and head[4] & 0x7F == 0 and head[5:8] == b"\x00\x00\x22":
        return "flac"
    # MP4/MOV/M4A/3GP: a first box of plausible binary size whose type is "ftyp" (or a bare QuickTime atom).
    size = int.from_bytes(head[:4], "big")
    if 8 <= size <= 4096 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return MOV_DEMUXER
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC") and b"COMM" in head[12:128]:
        return "aiff"
    if head[:2] in _MPEG_SYNC or head[:2] in _ADTS_SYNC:
        if _looks_like_text(head[2:2 + _SNIFF_BYTES]):
            raise UnsupportedFormat(
                f"{path.name} starts like an MPEG audio frame but holds text (a playlist or script?), "
                "not a recording"
            )
        return "mp3" if head[:2] in _MPEG_SYNC else "aac"
    return None


def _id3_size(head: bytes) -> int | None:
    """The length of the ID3v2 tag ``head`` starts with, or None when it starts with none."""
    # Version 2-4, a revision, flags, then a syncsafe size (the high bit of each byte clear).
    if not (head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4) and head[4] < 0xFF
            and all(b < 0x80 for b in head[6:10])):
        return None
    size = 10 + (head[6] << 21 | head[7] << 14 | head[8] << 7 | head[9])
    return size + 10 if head[3] == 4 and head[5] & 0x10 else size  # an ID3v2.4 footer


def _looks_like_text(data: bytes) -> bool:
    """Whether ``data`` is printable UTF-8 (audio frames carry NUL bytes and invalid UTF-8 within a few bytes)."""
    if not data or b"\x00" in data:
        return False
    text = data.decode("utf-8", "replace")
    # The window may cut the last character in two; anything else that fails to decode is binary.
    body = text[:-1] if len(text) > 1 else text
    return "\ufffd" not in body and all(c.isprintable() or c in "\t\r\n\f\v" for c in body)


def _bytes_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:  # a regular file: _read_head checked it
        f.seek(offset)
        return f.read(size)


def _part_head(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """The first ``limit`` bytes of a ZIP part: decompressed as far as that only (a part may be a bomb)."""
    with archive.open(name) as part:
        return part.read(limit)


def _zip_kind(path: Path, head: bytes) -> str:
    # Counted from the end record first: reading a central directory of millions of parts
    # (a 56 MB upload can declare 500,000) would take seconds in the service process.
    parts = declared_parts(path)
    if parts is not None and parts > MAX_PARTS:
        raise DocumentTooLarge(f"{path.name} is a ZIP archive of {parts:,} parts, more than the {MAX_PARTS:,} "
                               "an Office file can plausibly need")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for part, kind in _OOXML_PARTS:
                if part in names:
                    return kind
            if "[Content_Types].xml" in names:
                types = _part_head(archive, "[Content_Types].xml", _CONTENT_TYPES_BYTES)
                types = types.decode("utf-8", "replace").lower()
                for marker, kind in _OOXML_TYPES:
                    if marker in types:
                        return kind
            if "mimetype" in names and b"opendocument" in _part_head(archive, "mimetype", 128):
                raise UnsupportedFormat(
                    f"{path.name} is an OpenDocument file; save it as .docx, .xlsx or .pptx"
                )
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as e:
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
    if _looks_like_html(text):
        return "html"
    if _looks_like_email(text):
        return "email"
    suffix = path.suffix.lower()
    if suffix in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[suffix]
    if suffix not in _PLAIN_EXTENSIONS and _looks_like_csv(text):
        return "csv"
    return "text"


def _looks_like_html(text: str) -> bool:
    """Whether ``text`` opens with <!doctype html> or <html>, after an XML declaration and comments.

    Each step moves forward with find() or an anchored match, so the whole
    scan reads the text once, whatever it holds.
    """
    at = _SPACE.match(text).end()
    if text[at:at + 5].lower() == "<?xml":
        end = text.find(">", at + 5)
        if end < 0:
            return False
        at = _SPACE.match(text, end + 1).end()
    while text.startswith("<!--", at):
        end = text.find("-->", at + 4)  # a comment ends at the first "-->"
        if end < 0:
            return False
        at = _SPACE.match(text, end + 3).end()
    return _HTML_START.match(text, at) is not None


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
