"""The engine's exception hierarchy: one base, a few meaningful kinds.

Adapters convert third-party exceptions into these (``raise ... from e``) so the
front doors can map them to a user-facing reason without knowing any library.
"""

from __future__ import annotations


class ImpError(Exception):
    """Base of every error IMP raises on purpose. ``code`` is stable and machine-readable."""

    code = "imp_error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class UnsupportedFormat(ImpError):
    """The content is of a type IMP cannot read (binary junk, unknown format)."""

    code = "unsupported_format"


class CorruptDocument(ImpError):
    """The content claims a known format but cannot be parsed (truncated, damaged, encrypted)."""

    code = "corrupt_document"


class EmptyDocument(ImpError):
    """The document parsed but holds no text to index."""

    code = "empty_document"


class DocumentTooLarge(ImpError):
    """The document exceeds a configured size limit."""

    code = "too_large"


class NotFound(ImpError):
    """A named document, job or answer does not exist."""

    code = "not_found"


class InvalidRequest(ImpError):
    """A caller asked for something malformed (bad scope, empty query, unsafe filename)."""

    code = "invalid_request"


class BackendError(ImpError):
    """A model or storage backend failed (model folder missing, vector store unreachable)."""

    code = "backend_error"


class Busy(ImpError):
    """Too much work is already waiting; the caller should try again after ``retry_after`` seconds."""

    code = "busy"

    def __init__(self, detail: str, retry_after: int = 30):
        super().__init__(detail)
        self.retry_after = retry_after
