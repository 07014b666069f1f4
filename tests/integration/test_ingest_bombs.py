"""Hostile documents: decompression bombs, lying ZIP headers, XML entities, runaway loaders.

The builders at the top make each attack file from a real, valid document
(python-docx, openpyxl, python-pptx, a hand-written PDF), so the only thing
wrong with it is the attack; bench/attacks_ingest.py uses the same builders.
"""

from __future__ import annotations

import io
import os
import re
import resource
import struct
import time
import zipfile
import zlib
from pathlib import Path

import docx
import openpyxl
import pptx
import pytest

from app import build_engine
from core.config import Settings
from core.index.keyword import KeywordIndex
from core.index.vectors import ChromaVectorStore
from core.ingest.pipeline import IngestPipeline
from core.ingest.sandbox import LoaderSandbox
from core.models import IngestStatus
from core.store.database import Database
from core.store.registry import DocumentRegistry

MB = 1 << 20

# -- builders -----------------------------------------------------------------

MAIN_PART = {"docx": "word/document.xml", "xlsx": "xl/worksheets/sheet1.xml", "pptx": "ppt/slides/slide1.xml"}
# One unit of repeated body per kind: what the bomb's main part is made of.
_UNIT = {
    "docx": b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>",
    "xlsx": b'<row><c t="inlineStr"><is><t>bomb</t></is></c></row>',
    "pptx": b"<a:p><a:r><a:t>bomb</a:t></a:r></a:p>",
}
# Where the repeated body goes: right after the first occurrence of this tag.
_INSERT_AFTER = {"docx": b"<w:body>", "xlsx": b"<sheetData>", "pptx": b"<a:p>"}


def office_bytes(kind: str, text: str = "MARKER text") -> bytes:
    """A small, valid Office document whose main part holds ``text``."""
    out = io.BytesIO()
    if kind == "docx":
        d = docx.Document()
        d.add_paragraph(text)
        d.save(out)
    elif kind == "xlsx":
        wb = openpyxl.Workbook()
        wb.active["A1"] = "note"
        wb.active["A2"] = text
        wb.save(out)
    else:
        p = pptx.Presentation()
        slide = p.slides.add_slide(p.slide_layouts[5])
        slide.shapes.title.text = text
        p.save(out)
    return out.getvalue()


def _rewrite(kind: str, path: Path, main_part, level: int = 9) -> Path:
    """Copy a valid document into ``path``, writing its main part with ``main_part(original, file)``."""
    src = zipfile.ZipFile(io.BytesIO(office_bytes(kind)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == MAIN_PART[kind]:
                with z.open(info.filename, "w", force_zip64=True) as f:
                    main_part(data, f)
            else:
                z.writestr(info.filename, data)
    return path


def office_bomb(path: Path, kind: str, expanded: int) -> Path:
    """A valid document whose main part expands to about ``expanded`` bytes of repeated text."""
    unit = _UNIT[kind]
    block = unit * ((1 << 20) // len(unit))

    def write(original: bytes, f) -> None:
        head, sep, tail = original.partition(_INSERT_AFTER[kind])
        if kind == "pptx":  # inside a text body: close the first paragraph, repeat whole ones
            sep, tail = sep + b"<a:r><a:t>x</a:t></a:r></a:p>", b"<a:p>" + tail
        f.write(head + sep)
        for _ in range(max(1, expanded // len(block))):
            f.write(block)
        f.write(tail)

    return _rewrite(kind, path, write)


def office_with_dtd(path: Path, kind: str, attack: str, secret: Path | None = None) -> Path:
    """A document whose main part declares a DTD: ``xxe`` (an external entity naming ``secret``)
    or ``laughs`` (nested entities, a billion "lol"s); the entity replaces the document's text."""
    if attack == "xxe":
        dtd, entity = f'<!DOCTYPE r [<!ENTITY e SYSTEM "file://{secret}">]>', "e"
    else:
        levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
        dtd, entity = f'<!DOCTYPE r [<!ENTITY l0 "lol">{levels}]>', "l9"

    def write(original: bytes, f) -> None:
        body = re.sub(rb"^<\?xml[^>]*\?>\s*", b"", original).replace(b"MARKER", f"&{entity};".encode())
        f.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + dtd.encode() + body)

    return _rewrite(kind, path, write)


def lying_zip(path: Path, kind: str, expanded: int = 64 << 20) -> Path:
    """A bomb whose ZIP headers (local and central) declare the main part as 1 KiB.

    A reader that trusted the declared size but decompressed to the end of the
    data would inflate ``expanded`` bytes.
    """
    office_bomb(path, kind, expanded)
    data = bytearray(path.read_bytes())
    name = MAIN_PART[kind].encode()
    # Central directory entry: signature, then uncompressed size at +24 (zip64: in the extra field).
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    _declare_small(data, cd, central=True)
    offset = _local_offset(data, cd)
    _declare_small(data, offset, central=False)
    path.write_bytes(bytes(data))
    return path


def _local_offset(data: bytearray, cd: int) -> int:
    offset = struct.unpack_from("<I", data, cd + 42)[0]
    if offset == 0xFFFFFFFF:
        raise AssertionError("test file too large for a 32-bit local header offset")
    return offset


def _declare_small(data: bytearray, at: int, *, central: bool) -> None:
    size_at, name_len_at, extra_len_at, header = (24, 28, 30, 46) if central else (22, 26, 28, 30)
    name_len, extra_len = struct.unpack_from("<HH", data, at + name_len_at)
    if struct.unpack_from("<I", data, at + size_at)[0] == 0xFFFFFFFF:  # sizes live in the zip64 extra field
        extra = at + header + name_len
        end = extra + extra_len
        while extra < end:
            tag, size = struct.unpack_from("<HH", data, extra)
            if tag == 0x0001:
                struct.pack_into("<Q", data, extra + 4, 1024)  # the first value is the uncompressed size
                return
            extra += 4 + size
        raise AssertionError("zip64 extra field not found")
    struct.pack_into("<I", data, at + size_at, 1024)


def many_entries_zip(path: Path, kind: str, entries: int) -> Path:
    """A valid document plus ``entries`` empty members (a central directory bomb)."""
    src = zipfile.ZipFile(io.BytesIO(office_bytes(kind)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
        for i in range(entries):
            z.writestr(f"customXml/e{i}.bin", b"")
    return path


def pdf_bytes(streams: list[bytes], *, pages: int = 1, stream_per_page: bool = False) -> bytes:
    """A minimal PDF drawing FlateDecode content ``streams`` with Helvetica: every one of ``pages``
    pages draws all of them, or (``stream_per_page``) page n draws stream n."""
    if stream_per_page:
        pages = len(streams)
    first_stream = 3 + pages
    font = first_stream + len(streams)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{3 + i} 0 R' for i in range(pages))}] /Count {pages} >>".encode()]
    for page in range(pages):
        drawn = [first_stream + page] if stream_per_page else range(first_stream, font)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Contents [{' '.join(f'{n} 0 R' for n in drawn)}] "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
    for raw in streams:
        body = zlib.compress(raw, 9)
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_text(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"


def pdf_flate_bomb(path: Path, expanded: int, *, pages: int = 1) -> Path:
    """A PDF whose pages draw one FlateDecode content stream that inflates to ``expanded`` bytes."""
    filler = b"0 0 m\n" * (expanded // 6)
    path.write_bytes(pdf_bytes([pdf_text("Quarterly numbers"), filler], pages=pages))
    return path


def varied_docx(path: Path, expanded: int) -> Path:
    """A valid DOCX whose document.xml is ``expanded`` bytes of varied paragraphs (compresses ~5x, no bomb)."""

    # Varied within deflate's 32 KiB window, so repeating a 1 MiB block still compresses only ~5 times.
    block = b"".join(b"<w:p><w:r><w:t>line %d %x says %d</w:t></w:r></w:p>" % (n, n * 7919, n * n)
                     for n in range(20_000))

    def write(original: bytes, f) -> None:
        head, sep, tail = original.partition(_INSERT_AFTER["docx"])
        f.write(head + sep)
        for _ in range(expanded // len(block) + 1):
            f.write(block)
        f.write(tail)

    return _rewrite("docx", path, write, level=1)


# -- tests --------------------------------------------------------------------

KINDS = ("docx", "xlsx", "pptx")


def _ingest_one(engine, path: Path, bound_s: float = 30.0):
    started = time.monotonic()
    [result] = engine.ingest([path])
    assert time.monotonic() - started < bound_s, "the attack file was not refused promptly"
    return result


def _running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are loader workers (core.ingest.sandbox) of this test process, still running."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z" and int(ppid) == os.getpid() and b"core.ingest.sandbox" in cmdline:
            alive.append(pid)
    return alive


@pytest.mark.parametrize("kind", KINDS)
def test_an_office_decompression_bomb_is_refused_before_any_parsing(engine, tmp_path, kind):
    bomb = office_bomb(tmp_path / f"bomb.{kind}", kind, 64 * MB)
    assert bomb.stat().st_size < MB

    result = _ingest_one(engine, bomb, bound_s=10)

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert "decompression bomb" in result.error and MAIN_PART[kind] in result.error
    assert engine.search("bomb", k=3, mode="keyword") == []


@pytest.mark.parametrize("kind", KINDS)
def test_zip_headers_that_understate_a_part_do_not_make_it_inflate(engine, tmp_path, kind):
    liar = lying_zip(tmp_path / f"liar.{kind}", kind, 64 * MB)

    result = _ingest_one(engine, liar, bound_s=10)

    assert result.status == IngestStatus.FAILED and result.error_code == "corrupt_document"
    assert "CRC" in result.error  # the reader stopped at the declared 1 KiB and found the data is not that part


def test_a_package_with_more_parts_than_any_office_file_is_refused_unread(engine, tmp_path):
    crowded = many_entries_zip(tmp_path / "crowded.docx", "docx", 10_001)

    result = _ingest_one(engine, crowded, bound_s=10)

    assert result.status == IngestStatus.FAILED and "parts" in result.error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack", ["xxe", "laughs"])
def test_xml_entities_are_refused_and_never_reach_the_index(engine, tmp_path, kind, attack):
    secret = tmp_path / "secret.txt"
    secret.write_text("the vault code is PLUTONIUMWALRUS\n")
    hostile = office_with_dtd(tmp_path / f"{attack}.{kind}", kind, attack, secret)

    result = _ingest_one(engine, hostile, bound_s=10)

    assert result.status == IngestStatus.FAILED and "DTD" in result.error
    assert engine.search("vault code PLUTONIUMWALRUS", k=3, mode="keyword") == []
    assert engine.search("lol", k=3, mode="keyword") == []


def test_the_office_libraries_themselves_neither_read_external_entities_nor_expand_nested_ones(tmp_path):
    """The second line of defence, should a DTD ever get past the package check."""
    secret = tmp_path / "secret.txt"
    secret.write_text("PLUTONIUMWALRUS\n")
    readers = {
        "docx": lambda p: " ".join(par.text for par in docx.Document(str(p)).paragraphs),
        "pptx": lambda p: " ".join(sh.text_frame.text for s in pptx.Presentation(str(p)).slides for sh in s.shapes
                                   if sh.has_text_frame),
        "xlsx": lambda p: " ".join(str(c.value) for row in openpyxl.load_workbook(p).active.iter_rows()
                                   for c in row),
    }
    for kind, read in readers.items():
        for attack in ("xxe", "laughs"):
            started = time.monotonic()
            try:
                text = read(office_with_dtd(tmp_path / f"{attack}.{kind}", kind, attack, secret))
            except Exception:  # noqa: BLE001 - refusing to parse is as good as not expanding
                text = ""
            assert "PLUTONIUMWALRUS" not in text, (kind, attack)
            assert text.count("lol") < 1000 and time.monotonic() - started < 5, (kind, attack)


def test_a_pdf_whose_content_stream_is_a_flate_bomb_is_refused(engine, tmp_path):
    bomb = pdf_flate_bomb(tmp_path / "bomb.pdf", 100 * MB)
    assert bomb.stat().st_size < MB

    result = _ingest_one(engine, bomb, bound_s=20)

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert "decompression bomb" in result.error
    assert engine.search("quarterly numbers", k=3, mode="keyword") == []


def test_a_pdf_whose_pages_share_one_big_content_stream_is_refused_before_any_layout(engine, tmp_path):
    # 9 MB on each of 200 pages: 1.8 GB of content to lay out, from a 50 kB file.
    shared = pdf_flate_bomb(tmp_path / "shared.pdf", 9 * MB, pages=200)
    assert shared.stat().st_size < MB

    result = _ingest_one(engine, shared, bound_s=20)

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert "decompression bomb" in result.error and "1024 MB" in result.error


def test_pdf_reading_stops_at_the_page_where_text_passes_the_limit(settings, embedder, tmp_path):
    pages = [pdf_text(f"Page {n} of the long report about turbines and blades " * 3) for n in range(1, 401)]
    long_pdf = tmp_path / "long.pdf"
    long_pdf.write_bytes(pdf_bytes(pages, stream_per_page=True))
    engine = build_engine(Settings(data_dir=settings.data_dir, ingest={"max_chars": 2000}), embedder=embedder)
    try:
        result = _ingest_one(engine, long_pdf, bound_s=20)
    finally:
        engine.close()

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert "of 400" in result.error and "IMP_INGEST__MAX_CHARS" in result.error
    assert int(result.error.split("by page ")[1].split()[0]) < 20  # not all 400 pages were read


# -- loaders under limits ---------------------------------------------------------


@pytest.fixture
def make_pipeline(tmp_path, embedder):
    """IngestPipelines over a real registry, Chroma and keyword index, with given loader limits; all closed after."""
    database = Database(f"sqlite:///{tmp_path / 'imp.sqlite3'}")
    registry = DocumentRegistry(database)
    vectors = ChromaVectorStore("bombs", path=tmp_path / "chroma")
    made = []

    def make(**limits):
        made.append(IngestPipeline(registry, vectors, KeywordIndex(registry, tmp_path / "bm25"), embedder, **limits))
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.close()
    vectors.close()
    database.close()


def _note(folder: Path) -> Path:
    note = folder / "note.md"
    note.write_text("# Note\n\nThe offsite is in Lisbon in May.\n")
    return note


def test_a_loader_past_the_time_limit_is_killed_and_the_next_document_is_read(make_pipeline, tmp_path):
    # 200 pages sharing a 4 MB content stream, inside the content bounds (800 MB in all): 0.1-0.3 s of
    # layout per page, about a minute in all.
    slow = pdf_flate_bomb(tmp_path / "slow.pdf", 4 * MB, pages=200)
    pipeline = make_pipeline(loader_timeout_s=1, loader_workers=1)

    started = time.monotonic()
    result = pipeline.ingest(slow, "default")
    assert time.monotonic() - started < 15
    stuck = _running(pipeline.loader_pids())  # none: the stuck worker was killed

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert "longer than 1 s" in result.error and "IMP_INGEST__LOADER_TIMEOUT_S" in result.error
    assert stuck == []
    assert pipeline.ingest(_note(tmp_path), "default").status == IngestStatus.INDEXED
    assert len(_running(pipeline.loader_pids())) == 1  # a fresh one serves


def test_a_loader_past_the_memory_limit_is_stopped_and_the_service_stays_small(make_pipeline, tmp_path):
    heavy = varied_docx(tmp_path / "heavy.docx", 60 * MB)  # no bomb: parsing it simply needs > 300 MB
    pipeline = make_pipeline(loader_max_mb=300, loader_workers=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result = pipeline.ingest(heavy, "default")

    assert result.status == IngestStatus.FAILED and result.error_code == "too_large", result.error
    assert "300 MB" in result.error and "IMP_INGEST__LOADER_MAX_MB" in result.error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 250 * 1024  # KiB: not in this process
    assert pipeline.ingest(_note(tmp_path), "default").status == IngestStatus.INDEXED


def test_loader_processes_end_when_the_pipeline_closes_and_come_back_on_use(make_pipeline, tmp_path):
    pipeline = make_pipeline(loader_workers=2)
    assert pipeline.ingest(_note(tmp_path), "default").status == IngestStatus.INDEXED
    first = _running(pipeline.loader_pids())
    assert len(first) == 1  # started on demand, one at a time

    pipeline.close()
    assert _running(first) == [] and pipeline.loader_pids() == []

    (tmp_path / "note.md").write_text("# Note\n\nThe offsite moved to Porto.\n")
    assert pipeline.ingest(tmp_path / "note.md", "default").status == IngestStatus.INDEXED
    second = _running(pipeline.loader_pids())
    assert len(second) == 1 and second != first
    pipeline.close()
    assert _running(second) == []


def test_an_idle_loader_process_leaves_and_the_next_document_starts_another(make_pipeline, tmp_path):
    pipeline = make_pipeline(loader_workers=1, loader_idle_s=0.5)
    assert pipeline.ingest(_note(tmp_path), "default").status == IngestStatus.INDEXED
    first = pipeline.loader_pids()
    deadline = time.monotonic() + 10
    while _running(first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(first) == []

    (tmp_path / "note.md").write_text("# Note\n\nThe offsite moved to Porto.\n")
    assert pipeline.ingest(tmp_path / "note.md", "default").status == IngestStatus.INDEXED


def test_a_loader_bug_reaches_the_service_as_an_error_with_the_worker_traceback(tmp_path):
    sandbox = LoaderSandbox(workers=1)
    try:
        with pytest.raises(RuntimeError) as caught:
            sandbox.load(_note(tmp_path), "no-such-kind", 1000)  # load_file's dispatch fails inside the worker
        assert "KeyError" in str(caught.value) and "Traceback" in str(caught.value)
        assert sandbox.load(_note(tmp_path), "markdown", 1000).segments  # the worker still serves
    finally:
        sandbox.close()
