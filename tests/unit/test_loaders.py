"""Loaders: every supported format yields located text; bad files fail with a reason.

Fixtures are built inside each test with the same libraries people's tools use
(fpdf2 and pypdf for PDFs, python-docx/pptx and openpyxl for Office files).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx
import pytest
from fpdf import FPDF
from pptx.util import Inches
from pypdf import PdfWriter

from core.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    NotFound,
    UnsupportedFormat,
)
from core.ingest.loaders import detect_kind, load_file

# --- fixture builders -------------------------------------------------------


def pdf_bytes(pages: list[str], title: str | None = None) -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def two_page_pdf() -> bytes:
    return pdf_bytes(
        ["Revenue grew 12 percent in the first quarter.", "Operating costs fell on page two."],
        title="Quarterly Report",
    )


def encrypted_pdf(user_password: str, owner_password: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(two_page_pdf()))
    writer.encrypt(user_password, owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write(tmp_path: Path, name: str, content: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode(encoding)
    path.write_bytes(content)
    return path


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.core_properties.title = "Travel Policy"
    document.add_paragraph("Introductory note before any heading.")
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book flights through the portal.")
    table = document.add_table(rows=2, cols=3)
    rows = [("City", "Hotel cap", "Currency"), ("Paris", "180", "EUR")]
    for row, values in zip(table.rows, rows):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_heading("Expenses", level=2)
    document.add_paragraph("Submit receipts within 30 days.")
    document.save(path)
    return path


# --- detection ----------------------------------------------------------------


def test_pdf_with_a_txt_extension_is_read_as_pdf(tmp_path):
    path = write(tmp_path, "report.txt", two_page_pdf())
    assert detect_kind(path) == "pdf"
    assert load_file(path).segments[0].text.startswith("Revenue grew")


def test_docx_with_a_pdf_extension_is_read_as_docx(tmp_path):
    path = make_docx(tmp_path / "policy.pdf")
    assert detect_kind(path) == "docx"
    assert "Book flights through the portal." in [s.text for s in load_file(path).segments]


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("notes.txt", "WEBVTT\n\n00:01.000 --> 00:02.000\nHello\n", "vtt"),
        ("notes.txt", "1\n00:00:01,000 --> 00:00:02,000\nHello\n", "srt"),
        ("page.txt", "<!DOCTYPE html><html><body><p>Hi</p></body></html>", "html"),
        ("mail.txt", "From: a@example.com\nTo: b@example.com\nSubject: Hi\n\nBody\n", "email"),
        ("readme.md", "# Title\n\nSome text.\n", "markdown"),
        ("data.csv", "a,b\n1,2\n", "csv"),
        ("export", "name;team;city\nAda;R&D;Oslo\nBob;Ops;Rome\n", "csv"),
        ("notes.txt", "name;team;city\nAda;R&D;Oslo\nBob;Ops;Rome\n", "text"),
        ("notes", "Hello, world\nThis is me, here\nAnd again, yes\n", "text"),
        ("fragment.html", "<p>No doctype here</p>", "html"),
        ("plain.txt", "Just a line of text.\n", "text"),
    ],
)
def test_text_formats_are_told_apart_by_shape_then_extension(tmp_path, name, content, kind):
    assert detect_kind(write(tmp_path, name, content)) == kind


def test_empty_file_is_reported_as_empty(tmp_path):
    with pytest.raises(EmptyDocument, match=r"empty.pdf is empty \(0 bytes\)"):
        load_file(write(tmp_path, "empty.pdf", b""))


def test_binary_junk_is_unsupported(tmp_path):
    junk = os.urandom(4096) + b"\x00\x00" + os.urandom(1024)
    with pytest.raises(UnsupportedFormat, match="binary"):
        load_file(write(tmp_path, "notes.txt", junk))


def test_zip_without_office_parts_is_unsupported(tmp_path):
    path = tmp_path / "bundle.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not an office file")
    with pytest.raises(UnsupportedFormat, match="ZIP archive without Word, PowerPoint or Excel"):
        load_file(path)


def test_image_is_named_as_unsupported(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)
    with pytest.raises(UnsupportedFormat, match="PNG image"):
        load_file(write(tmp_path, "scan.pdf", png))


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        load_file(tmp_path / "nope.pdf")


# --- PDF ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["pdfium", "pypdf"])
def test_pdf_segments_carry_their_page_number_and_title(tmp_path, engine):
    doc = load_file(write(tmp_path, "q1.pdf", two_page_pdf()), pdf_text=engine)
    assert doc.kind == "pdf"
    assert doc.title == "Quarterly Report"
    assert [(s.page, s.text) for s in doc.segments] == [
        (1, "Revenue grew 12 percent in the first quarter."),
        (2, "Operating costs fell on page two."),
    ]


def test_pdf_pages_after_a_blank_page_keep_their_numbers(tmp_path):
    path = write(tmp_path, "gap.pdf", pdf_bytes(["Cover letter.", "", "", "Results are on page four."]))
    assert [(s.page, s.text) for s in load_file(path).segments] == [
        (1, "Cover letter."), (4, "Results are on page four.")]


def test_pdf_paragraphs_are_found_from_the_layout(tmp_path):
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    first = ("The board approved the budget for the coming year after a long discussion of costs and of the "
             "new plant, which opens in the spring and employs three hundred people.")
    pdf.multi_cell(0, 6, first)  # wraps over two lines, single-spaced
    pdf.ln(8)  # a blank line's worth of space: a new paragraph
    pdf.multi_cell(0, 6, "Dividends stay at 40 cents a share.")
    doc = load_file(write(tmp_path, "minutes.pdf", bytes(pdf.output())))
    assert [(s.page, s.text) for s in doc.segments] == [(1, first), (1, "Dividends stay at 40 cents a share.")]


def test_pdf_text_engine_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="pdfium, pypdf"):
        load_file(write(tmp_path, "q1.pdf", two_page_pdf()), pdf_text="ocr")


def test_password_protected_pdf_is_refused_with_a_reason(tmp_path):
    path = write(tmp_path, "secret.pdf", encrypted_pdf("hunter2"))
    with pytest.raises(CorruptDocument, match="encrypted with a password"):
        load_file(path)


def test_pdf_restricted_only_by_owner_password_still_loads(tmp_path):
    path = write(tmp_path, "restricted.pdf", encrypted_pdf("", owner_password="owner"))
    assert [s.page for s in load_file(path).segments] == [1, 2]


def test_truncated_pdf_is_corrupt(tmp_path):
    data = two_page_pdf()
    with pytest.raises(CorruptDocument, match="PDF"):
        load_file(write(tmp_path, "cut.pdf", data[: len(data) // 2]))


def test_pdf_without_text_layer_says_ocr_is_not_supported(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 80, 40)
    path = write(tmp_path, "scan.pdf", bytes(pdf.output()))
    with pytest.raises(EmptyDocument, match="no extractable text.*OCR is not supported"):
        load_file(path)


# --- Office -----------------------------------------------------------------------


def test_docx_paragraphs_tables_and_heading_sections(tmp_path):
    doc = load_file(make_docx(tmp_path / "policy.docx"))
    assert doc.kind == "docx"
    assert doc.title == "Travel Policy"
    assert [(s.section, s.text) for s in doc.segments] == [
        (None, "Introductory note before any heading."),
        ("Booking", "Booking"),
        ("Booking", "Book flights through the portal."),
        ("Booking", "City | Hotel cap | Currency"),
        ("Booking", "Paris | 180 | EUR"),
        ("Expenses", "Expenses"),
        ("Expenses", "Submit receipts within 30 days."),
    ]
    assert all(s.page is None for s in doc.segments)


def test_pptx_text_per_slide_with_notes_and_first_slide_title(tmp_path):
    presentation = pptx.Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[0])
    first.shapes.title.text = "Roadmap 2025"
    first.placeholders[1].text = "Engineering all-hands"
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    second.shapes.title.text = "Milestones"
    box = second.shapes.add_textbox(Inches(1), Inches(2), Inches(4), Inches(1))
    box.text_frame.text = "Beta ships in March"
    second.notes_slide.notes_text_frame.text = "Mention the hiring freeze."
    path = tmp_path / "deck.pptx"
    presentation.save(path)

    doc = load_file(path)
    assert doc.kind == "pptx"
    assert doc.title == "Roadmap 2025"
    assert [(s.page, s.text) for s in doc.segments] == [
        (1, "Roadmap 2025"),
        (1, "Engineering all-hands"),
        (2, "Milestones"),
        (2, "Beta ships in March"),
        (2, "Mention the hiring freeze."),
    ]
    assert doc.segments[3].section == "Milestones"


def test_xlsx_rows_are_labelled_by_header_per_sheet(tmp_path):
    workbook = openpyxl.Workbook()
    staff = workbook.active
    staff.title = "Staff"
    staff.append([None])  # a blank first row: the header is the first non-empty one
    staff.append(["Name", "Team", "Salary"])
    staff.append(["Ada", "R&D", 5000.0])
    staff.append(["Bob", None, 4200])
    budget = workbook.create_sheet("Budget")
    budget.append(["Item", "Cost"])
    budget.append(["Laptops", 12000])
    path = tmp_path / "hr.xlsx"
    workbook.save(path)

    doc = load_file(path)
    assert doc.kind == "xlsx"
    assert [(s.section, s.text) for s in doc.segments] == [
        ("Staff", "Name: Ada; Team: R&D; Salary: 5000"),
        ("Staff", "Name: Bob; Salary: 4200"),
        ("Budget", "Item: Laptops; Cost: 12000"),
    ]


def test_truncated_docx_is_corrupt(tmp_path):
    data = make_docx(tmp_path / "full.docx").read_bytes()
    with pytest.raises(CorruptDocument, match="DOCX"):
        load_file(write(tmp_path, "cut.docx", data[: len(data) // 2]))


# --- CSV, HTML, Markdown, text ------------------------------------------------------


def test_csv_dialect_is_sniffed_and_quoted_values_kept(tmp_path):
    content = 'Name;City;Note\nAda;Oslo;"likes; semicolons"\nBob;"Rome";"two\nlines"\n'
    doc = load_file(write(tmp_path, "people.csv", content))
    assert [s.text for s in doc.segments] == [
        "Name: Ada; City: Oslo; Note: likes; semicolons",
        "Name: Bob; City: Rome; Note: two lines",
    ]


def test_html_drops_scripts_and_sections_by_heading(tmp_path):
    page = """<!doctype html><html><head><title>Onboarding</title>
    <style>p { color: red }</style><script>var secret = 1;</script></head>
    <body><noscript>Enable JS</noscript>
    <h1>Welcome</h1><p>Your first day starts at <b>9am</b>.<br>Bring ID.</p>
    <h2>Equipment</h2><ul><li>Laptop</li><li>Badge</li></ul>
    <table><tr><th>Item</th><th>Owner</th></tr><tr><td>Laptop</td><td>IT</td></tr></table>
    </body></html>"""
    doc = load_file(write(tmp_path, "onboarding.html", page))
    assert doc.title == "Onboarding"
    assert [(s.section, s.text) for s in doc.segments] == [
        ("Welcome", "Welcome"),
        ("Welcome", "Your first day starts at 9am. Bring ID."),
        ("Equipment", "Equipment"),
        ("Equipment", "Laptop"),
        ("Equipment", "Badge"),
        ("Equipment", "Item | Owner"),
        ("Equipment", "Laptop | IT"),
    ]
    text = " ".join(s.text for s in doc.segments)
    assert "secret" not in text and "color" not in text and "Enable JS" not in text


def test_markdown_headings_set_sections(tmp_path):
    content = (
        "# Runbook\n\nRestart the service first.\n\n## Escalation\n\n"
        "- Page the on-call\n- Open an incident\n\n```\nsystemctl restart imp\n```\n"
    )
    doc = load_file(write(tmp_path, "runbook.md", content))
    assert doc.title == "Runbook"
    assert [(s.section, s.text) for s in doc.segments] == [
        ("Runbook", "Runbook"),
        ("Runbook", "Restart the service first."),
        ("Escalation", "Escalation"),
        ("Escalation", "- Page the on-call"),
        ("Escalation", "- Open an incident"),
        ("Escalation", "systemctl restart imp"),
    ]


def test_cp1252_text_keeps_its_accents(tmp_path):
    content = "Café crème brûlée, naïve façade – “quoted” text.\r\nZoë’s résumé was déjà vu.\r\n"
    doc = load_file(write(tmp_path, "legacy.txt", content, encoding="cp1252"))
    assert [s.text for s in doc.segments] == [
        "Café crème brûlée, naïve façade – “quoted” text.",
        "Zoë’s résumé was déjà vu.",
    ]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_text_with_a_byte_order_mark_decodes(tmp_path, encoding):
    doc = load_file(write(tmp_path, "bom.txt", "Ärger\n\nÜbermut\n", encoding=encoding))
    assert [s.text for s in doc.segments] == ["Ärger", "Übermut"]


def test_blank_text_file_is_empty(tmp_path):
    with pytest.raises(EmptyDocument, match="blank"):
        load_file(write(tmp_path, "blank.txt", "\n   \n\t\n"))


# --- e-mail -------------------------------------------------------------------------


def test_email_has_a_header_segment_then_the_plain_body(tmp_path):
    content = (
        "From: Ada Lovelace <ada@example.com>\nTo: team@example.com\n"
        "Subject: Launch moved to Friday\nDate: Mon, 3 Mar 2025 10:00:00 +0000\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain; charset=utf-8\n\nHi all,\n\nThe launch moves to Friday.\n"
        "--XX\nContent-Type: text/plain; name=agenda.txt\nContent-Disposition: attachment; "
        "filename=agenda.txt\n\nSECRET ATTACHMENT TEXT\n--XX--\n"
    )
    doc = load_file(write(tmp_path, "launch.eml", content))
    assert doc.kind == "email"
    assert doc.title == "Launch moved to Friday"
    assert [s.text for s in doc.segments] == [
        "Subject: Launch moved to Friday\nFrom: Ada Lovelace <ada@example.com>\n"
        "To: team@example.com\nDate: Mon, 03 Mar 2025 10:00:00 +0000",
        "Hi all,",
        "The launch moves to Friday.",
    ]


def test_html_only_email_body_is_stripped_to_text(tmp_path):
    content = (
        "From: it@example.com\nSubject: Password reset\nMIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\n\n"
        "<html><body><p>Reset your password <a href='#'>here</a>.</p>"
        "<script>track()</script></body></html>\n"
    )
    doc = load_file(write(tmp_path, "reset.eml", content))
    assert [s.text for s in doc.segments][1:] == ["Reset your password here."]


# --- subtitles ------------------------------------------------------------------------


def test_vtt_cues_have_times_and_speakers(tmp_path):
    content = (
        "WEBVTT - Weekly sync\nKind: captions\n\n"
        "NOTE recorded on Teams\n\n"
        "STYLE\n::cue { color: yellow }\n\n"
        "intro\n00:00:01.500 --> 00:00:04.000 align:start\n"
        "<v Ada Lovelace>Let's <b>start</b>.</v>\n\n"
        "00:04.000 --> 00:07.250\nBob: The build is green\nagain.\n\n"
        "01:00:00.000 --> 01:00:02.000\n&lt;laughs&gt; Thanks &amp; bye\n"
    )
    doc = load_file(write(tmp_path, "sync.vtt", content))
    assert doc.title == "Weekly sync"
    assert [(s.start, s.end, s.speaker, s.text) for s in doc.segments] == [
        (1.5, 4.0, "Ada Lovelace", "Let's start."),
        (4.0, 7.25, "Bob", "The build is green again."),
        (3600.0, 3602.0, None, "<laughs> Thanks & bye"),
    ]


def test_srt_cues_have_times_and_prefix_speakers(tmp_path):
    content = (
        "1\n00:00:01,000 --> 00:00:03,500\nCarol: <i>Welcome</i> everyone.\n\n"
        "2\n00:00:03,500 --> 00:00:06,000\nAs I said before, the plan: ship it.\n"
    )
    doc = load_file(write(tmp_path, "talk.srt", content))
    assert doc.kind == "srt"
    assert [(s.start, s.end, s.speaker, s.text) for s in doc.segments] == [
        (1.0, 3.5, "Carol", "Welcome everyone."),
        (3.5, 6.0, None, "As I said before, the plan: ship it."),
    ]


def test_malformed_srt_timestamp_names_the_line(tmp_path):
    content = (
        "1\n00:00:01,000 --> 00:00:02,000\nFine.\n\n"
        "2\n00:00:03;500 --> 00:00:04,000\nBroken.\n"
    )
    with pytest.raises(CorruptDocument, match=r"line 6: malformed timestamp '00:00:03;500'"):
        load_file(write(tmp_path, "broken.srt", content))


# --- limits ---------------------------------------------------------------------------


def test_huge_single_line_text_fails_fast_with_the_limit_named(tmp_path):
    path = tmp_path / "dump.txt"
    with path.open("wb") as f:
        f.write(b"log entry " * (5 * 1024 * 1024))  # 50 MiB, one line
    limit = r"52,428,800 bytes.*5,000,000 characters.*IMP_INGEST__MAX_CHARS"
    with pytest.raises(DocumentTooLarge, match=limit):
        load_file(path)


def test_extracted_text_over_the_limit_is_too_large(tmp_path):
    path = write(tmp_path, "q1.pdf", two_page_pdf())
    with pytest.raises(DocumentTooLarge, match=r"20 characters.*IMP_INGEST__MAX_CHARS"):
        load_file(path, max_chars=20)
