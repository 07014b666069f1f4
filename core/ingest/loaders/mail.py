"""E-mail (.eml) loading with the stdlib ``email`` package.

The first segment carries the headers a reader cites (subject, sender,
recipients, date); the body follows, plain text preferred over HTML.
Attachments are not read: they are documents of their own.
"""

from __future__ import annotations

import email
import logging
import re
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from pathlib import Path

from core.errors import CorruptDocument
from core.ingest.loaders.text import decode_text
from core.ingest.loaders.web import html_segments
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

_SHOWN_HEADERS = ("Subject", "From", "To", "Cc", "Date")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def load(path: Path) -> LoadedDocument:
    try:
        with path.open("rb") as f:
            message = email.message_from_binary_file(f, policy=policy.default)
        header_lines = [
            f"{name}: {value}" for name in _SHOWN_HEADERS if (value := _header(message, name))
        ]
        subject = _header(message, "Subject")
        body = _body_segments(message)
        for attachment in message.iter_attachments():
            log.debug("%s: attachment %r not indexed", path.name, attachment.get_filename())
    except (MessageError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CorruptDocument(f"e-mail cannot be parsed: {e}") from e
    segments = [Segment(text="\n".join(header_lines))] if header_lines else []
    segments.extend(body)
    return LoadedDocument(kind="email", segments=segments, title=subject)


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
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
