"""E-mail (.eml) loading with the stdlib ``email`` package.

The first segment carries the headers a reader cites (subject, sender,
recipients, date); the body follows, plain text preferred over HTML.
Attachments are not read: they are documents of their own.

Header values are cut to MAX_HEADER_CHARS before the stdlib parses them: its header
parser is super-linear on crafted values (a 64 KB Content-Type of RFC 2231 parameters
took 15 s) and recursive on nested comments.
"""

from __future__ import annotations

import email
import logging
import re
from email.errors import MessageError
from email.message import EmailMessage
from email.policy import EmailPolicy
from pathlib import Path

from core.errors import CorruptDocument
from core.ingest.loaders.text import decode_text
from core.ingest.loaders.web import html_segments
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

_SHOWN_HEADERS = ("Subject", "From", "To", "Cc", "Date")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Far above a real header (a To: line of some sixty addresses); parsing one this long costs at most
# about 0.1 s whatever its shape.
MAX_HEADER_CHARS = 2000


class _BoundedHeaders(EmailPolicy):
    """``email.policy.default``, except that a header value is cut to MAX_HEADER_CHARS before it is parsed."""

    def header_fetch_parse(self, name, value):
        if isinstance(value, str) and len(value) > MAX_HEADER_CHARS:
            value = _cut(value)
        return super().header_fetch_parse(name, value)


def _cut(value: str) -> str:
    """The head of a long header value, ended at its last address or parameter separator when there is one."""
    head = value[:MAX_HEADER_CHARS]
    end = max(head.rfind(","), head.rfind(";"))
    return head[:end] if end > MAX_HEADER_CHARS // 2 else head


_POLICY = _BoundedHeaders()


def load(path: Path) -> LoadedDocument:
    try:
        with path.open("rb") as f:
            message = email.message_from_binary_file(f, policy=_POLICY)
        header_lines = [
            f"{name}: {value}" for name in _SHOWN_HEADERS if (value := _header(message, name))
        ]
        subject = _header(message, "Subject")
        body = _body_segments(message)
        for attachment in message.iter_attachments():
            log.debug("%s: attachment %r not indexed", path.name, attachment.get_filename())
    except (MessageError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CorruptDocument(f"e-mail cannot be parsed: {e}") from e
    except RecursionError as e:  # the header parser recurses into each nested "(" of a comment
        raise CorruptDocument("e-mail cannot be parsed: a header nests too deeply") from e
    segments = [Segment(text="\n".join(header_lines))] if header_lines else []
    segments.extend(body)
    return LoadedDocument(kind="email", segments=segments, title=subject)


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except RecursionError:  # "From: ((((…": one unreadable header, not an unreadable e-mail
        log.debug("%s header nests too deeply to read", name)
        return None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _body_segments(message: EmailMessage) -> list[Segment]:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return []
    content = _content(part)
    if part.get_content_subtype() == "html":
        segments, _ = html_segments(content)
        return segments
    return [
        Segment(text=paragraph.strip())
        for paragraph in _PARAGRAPH_BREAK.split(content)
        if paragraph.strip()
    ]


def _content(part: EmailMessage) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeDecodeError):
        # An unknown or wrong charset label: judge the bytes ourselves.
        raw = part.get_payload(decode=True) or b""
        log.debug("e-mail body charset %r unusable, guessing", part.get_content_charset())
        return decode_text(raw)
