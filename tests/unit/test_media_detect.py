"""detect_kind tells recordings from documents by their first bytes, whatever the file is called.

Each head below is the start of a real file of its kind (magic, then the
fields that follow it), written under a text-like name so only the content
can decide. ``media_demuxer`` names the one ffmpeg demuxer allowed to read it;
an audio tag or frame header in front of text (a playlist dressed as an MP3)
is refused.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from core.errors import EmptyDocument, UnsupportedFormat
from core.ingest.loaders import MEDIA, detect_kind
from core.ingest.loaders.detect import media_demuxer


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


_FMT = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)


def _wave() -> bytes:
    return b"RIFF" + struct.pack("<I", 36 + 3200) + b"WAVE" + _FMT + b"data" + struct.pack("<I", 3200) + bytes(3200)


def _rf64() -> bytes:
    """RF64 (EBU Tech 3306), the WAV that outgrows 4 GB: sizes sit in a ds64 chunk, the RIFF size is -1."""
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, 3236, 3200, 1600, 0)
    return b"RF64" + b"\xff\xff\xff\xff" + b"WAVE" + ds64 + _FMT + b"data\xff\xff\xff\xff" + bytes(3200)


_MPEG_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 layer III, 128 kb/s, 44.1 kHz
_ADTS_FRAME = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(9)  # AAC-LC, 44.1 kHz, mono
_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x16" + b"TIT2\x00\x00\x00\x0c\x00\x00\x03Weekly sync"

HEADS = {
    "wav": _wave(),
    "avi": b"RIFF" + struct.pack("<I", 2048) + b"AVI LIST" + struct.pack("<I", 192) + b"hdrlavih" + bytes(64),
    "flac": b"fLaC\x00\x00\x00\x22" + bytes(34),
    "ogg opus": b"OggS\x00\x02" + bytes(8) + b"\x01\x02\x03\x04" + bytes(8) + b"\x01\x13OpusHead\x01\x01",
    "ogg vorbis": b"OggS\x00\x02" + bytes(8) + b"\x01\x02\x03\x04" + bytes(8) + b"\x01\x1e\x01vorbis",
    "webm / mkv (EBML)": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm",
    "mp4 (ftypisom)": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
    "m4a (ftypM4A)": b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom",
    "mov (ftypqt)": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
    "mp3 with ID3v2 tag": _ID3 + _MPEG_FRAME,
    "mp3 frame sync ff fb": _MPEG_FRAME * 3,
    "mp3 MPEG-2 frame sync ff f3": b"\xff\xf3\x64\xc4" + bytes(200),
    "aac ADTS ff f1": _ADTS_FRAME * 3,
    "aiff": b"FORM\x00\x00\x00\x2eAIFFCOMM\x00\x00\x00\x12\x00\x01" + bytes(16),
    "caf": b"caff\x00\x01\x00\x00desc" + bytes(40),
    "amr": b"#!AMR\n" + bytes(32),
    "wma / wmv (ASF)": b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c" + bytes(16),
    "w64": b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00" + struct.pack("<Q", 3300)
           + b"wave\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a" + bytes(64),
    "flac with an ID3 tag": _ID3 + b"fLaC\x00\x00\x00\x22" + bytes(34),
    "aac with an ID3 tag": _ID3 + _ADTS_FRAME * 3,
}
# The demuxer, as `ffmpeg -demuxers` names it, that core.ingest.media forces for each head.
DEMUXERS = {
    "wav": "wav", "avi": "avi", "flac": "flac", "ogg opus": "ogg", "ogg vorbis": "ogg",
    "webm / mkv (EBML)": "matroska,webm", "mp4 (ftypisom)": "mov,mp4,m4a,3gp,3g2,mj2",
    "m4a (ftypM4A)": "mov,mp4,m4a,3gp,3g2,mj2", "mov (ftypqt)": "mov,mp4,m4a,3gp,3g2,mj2",
    "mp3 with ID3v2 tag": "mp3", "mp3 frame sync ff fb": "mp3", "mp3 MPEG-2 frame sync ff f3": "mp3",
    "aac ADTS ff f1": "aac", "aiff": "aiff", "caf": "caf", "amr": "amr", "wma / wmv (ASF)": "asf", "w64": "w64",
    "flac with an ID3 tag": "flac", "aac with an ID3 tag": "aac",
}


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
@pytest.mark.parametrize("name", ["notes.txt", "upload", "minutes.md"])
def test_recordings_are_media_whatever_their_name(tmp_path, head, name):
    assert detect_kind(_write(tmp_path, name, head)) == MEDIA


def test_an_rf64_wav_is_media(tmp_path):
    path = _write(tmp_path, "long-take.wav", _rf64())
    assert detect_kind(path) == MEDIA
    assert media_demuxer(path) == "wav"


@pytest.mark.parametrize("name", HEADS.keys())
def test_each_recording_names_its_own_demuxer(tmp_path, name):
    assert media_demuxer(_write(tmp_path, "upload", HEADS[name])) == DEMUXERS[name]


def test_an_id3_tag_larger_than_the_detection_window_is_looked_past(tmp_path):
    # Cover art makes tags of hundreds of KB; what follows the tag decides, not the tag.
    art = bytes(200_000)
    tag = b"ID3\x03\x00\x00" + bytes((len(art) >> s) & 0x7F for s in (21, 14, 7, 0)) + art
    assert media_demuxer(_write(tmp_path, "song.mp3", tag + _ADTS_FRAME * 3)) == "aac"
    assert detect_kind(_write(tmp_path, "song.mp3", tag + _MPEG_FRAME * 3)) == MEDIA


def test_binary_after_an_id3_tag_is_left_to_the_mp3_demuxer(tmp_path):
    # Encoders leave junk between the tag and the first frame; ffmpeg's mp3 demuxer finds the frames.
    assert media_demuxer(_write(tmp_path, "song.mp3", _ID3 + b"\x01\x80\x00junk" + _MPEG_FRAME)) == "mp3"


PLAYLISTS = {
    "hls": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n../other/recording.m4a\n#EXT-X-ENDLIST\n",
    "ffconcat": b"ffconcat version 1.0\nfile '/srv/imp/files/recording.wav'\n",
    "utf-8 playlist": "#EXTM3U\n#EXTINF:10,Réunion\n/srv/réunion.mp3\n".encode(),
}


@pytest.mark.parametrize("front", [_ID3, _ID3 + bytes(40), b"\xff\xfb", b"\xff\xf1"],
                         ids=["id3", "id3 with padding", "mpeg frame sync", "adts sync"])
@pytest.mark.parametrize("text", PLAYLISTS.values(), ids=PLAYLISTS.keys())
def test_an_audio_header_in_front_of_text_is_refused(tmp_path, front, text):
    path = _write(tmp_path, "call.mp3", front + text)
    with pytest.raises(UnsupportedFormat) as err:
        detect_kind(path)
    assert "call.mp3" in err.value.detail and "holds text" in err.value.detail
    with pytest.raises(UnsupportedFormat):
        media_demuxer(path)


def test_a_file_of_nothing_but_id3_tags_is_refused(tmp_path):
    with pytest.raises(UnsupportedFormat, match="nothing but audio tags"):
        media_demuxer(_write(tmp_path, "tags.mp3", _ID3 * 20))


@pytest.mark.parametrize("text", [b"Notes from Monday\n", b"#EXTM3U\n/srv/a.mp3\n", b"[playlist]\nFile1=a.mp3\n"],
                         ids=["notes", "bare m3u", "pls"])
def test_text_has_no_demuxer(tmp_path, text):
    assert media_demuxer(_write(tmp_path, "call.mp3", text)) is None


def test_a_pipe_gets_no_demuxer_and_does_not_block(tmp_path):
    fifo = tmp_path / "call.wav"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFormat, match="not a regular file"):
        media_demuxer(fifo)



# Notes people write about audio formats, or about anything else, start with words that share
# letters with some magic. Real files follow their magic with binary fields (NUL bytes, small
# version numbers) that plain text never has.
TEXT_LOOKALIKES = [
    pytest.param("FLAC is a codec we might support.\n", id="FLAC upper case"),
    pytest.param("RIFF and WAVE are the words to search for.\n", id="RIFF and WAVE words"),
    pytest.param("Ogg Vorbis notes\n- quality 5 is enough\n", id="Ogg words"),
    pytest.param("Tagging: ID3 versions differ.\n", id="ID3 mid-line"),
    pytest.param("ftyp comes first in every MP4.\n", id="ftyp at the start"),
    pytest.param("MZ team notes\n", id="MZ words"),
    pytest.param("ID3 notes from the tagging meeting\nWe agreed on v2.4.\n", id="ID3 notes"),
    pytest.param("ID3v2 tags: what we store\n", id="ID3v2 tags"),
    pytest.param("caffeine log\nMonday: 3 cups\n", id="caffeine"),
    pytest.param("The ftyp box comes first in an MP4 file.\n", id="The ftyp"),
    pytest.param("FORMAT: AIFF or WAV, please.\n", id="FORMAT: AIFF"),
    pytest.param("fLaC is a codec we might support.\n", id="fLaC mixed case"),
]


@pytest.mark.parametrize("text", TEXT_LOOKALIKES)
def test_text_that_looks_like_a_magic_number_stays_text(tmp_path, text):
    assert detect_kind(_write(tmp_path, "notes.txt", text.encode())) == "text"


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"], ids=["utf-16-le", "utf-16-be"])
def test_utf16_text_is_not_taken_for_an_mpeg_frame(tmp_path, bom):
    codec = "utf-16-le" if bom == b"\xff\xfe" else "utf-16-be"
    path = _write(tmp_path, "notes.txt", bom + "Action items: ship the release.\n".encode(codec))
    assert detect_kind(path) == "text"


@pytest.mark.parametrize(("head", "what"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + bytes(17), "PNG"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(7), "JPEG"),
    (b"RIFF" + struct.pack("<I", 64) + b"WEBPVP8 " + bytes(20), "WebP"),
], ids=["png", "jpeg", "webp"])
def test_images_are_refused_not_taken_for_recordings(tmp_path, head, what):
    path = _write(tmp_path, "photo.mp3", head)
    with pytest.raises(UnsupportedFormat) as err:
        detect_kind(path)
    assert what in err.value.detail
    assert "photo.mp3" in err.value.detail


def test_an_empty_file_is_empty(tmp_path):
    with pytest.raises(EmptyDocument) as err:
        detect_kind(_write(tmp_path, "call.mp3", b""))
    assert "empty" in err.value.detail


def test_an_empty_file_is_named_in_the_reason(tmp_path):
    with pytest.raises(EmptyDocument) as err:
        detect_kind(_write(tmp_path, "call.mp3", b""))
    assert "call.mp3" in err.value.detail


def test_a_pipe_is_refused_without_being_opened(tmp_path):
    # Opening a FIFO with no writer blocks forever; a folder being ingested may hold one.
    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFormat, match="not a regular file"):
        detect_kind(fifo)
