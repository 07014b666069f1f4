"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, TGI) over HTTP.

Requests time out, and transient failures (connection errors, 429, 5xx) are
retried a bounded number of times with backoff, honouring Retry-After. A stream
is retried only until its first token arrives. A reply that times out while the
server is generating is not retried: the server is busy, and asking again only
queues the same work behind it. A stream that ends without its end mark (the
server died or a proxy cut it) or carries an error event is an error, never a
silently shortened answer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt

from core.errors import BackendError
from core.models import Message

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_MAX_WAIT_S = 30.0
# llama.cpp: exceed_context_size_error; vLLM and OpenAI: "maximum context length"
_CONTEXT_FULL = re.compile(r"exceed_context_size|context length|context size|context window", re.IGNORECASE)


class _Transient(Exception):
    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Transient) and exc.retry_after is not None:
        return min(exc.retry_after, _MAX_WAIT_S)
    return min(0.5 * 2 ** (state.attempt_number - 1), _MAX_WAIT_S)


def _transient(e: BaseException) -> bool:
    if isinstance(e, httpx.ReadTimeout | httpx.WriteTimeout):
        return False
    return isinstance(e, _Transient | httpx.TransportError)


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server."""

    def __init__(self, base_url: str, model: str, *, api_key: SecretStr | None = None, timeout_s: float = 60.0,
                 max_retries: int = 3, context_tokens: int = 8192, temperature: float = 0.0):
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._key = api_key
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self._attempts = max_retries + 1
        self._context = context_tokens
        self._temperature = temperature

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}"

    @property
    def context_tokens(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not available here; 3.5 characters a token errs on the long side.
        return int(len(text) / 3.5) + 1

    def _headers(self) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if self._key is not None:
            h["authorization"] = f"Bearer {self._key.get_secret_value()}"
        return h

    def _body(self, messages: list[Message], max_tokens: int, stream: bool) -> dict:
        return {"model": self._model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                "max_tokens": max_tokens, "temperature": self._temperature, "stream": stream}

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code in _RETRY_STATUS:
            raise _Transient(f"HTTP {resp.status_code}", _retry_after(resp))
        if resp.status_code >= 400:
            resp.read()
            if resp.status_code == 400 and _CONTEXT_FULL.search(resp.text):
                raise BackendError(f"the prompt does not fit the LLM server's context ({resp.text[:200]}); set "
                                   "IMP_LLM__CONTEXT_TOKENS to the context the server was started with")
            raise BackendError(f"LLM server answered HTTP {resp.status_code}: {resp.text[:300]}")

    def _retrying(self, fn):
        return retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts), wait=_wait, reraise=True,
        )(fn)

    def complete(self, messages: list[Message], *, max_tokens: int) -> str:
        def call() -> str:
            with httpx.Client(timeout=self._timeout) as client:
                resp = client.post(self._url, json=self._body(messages, max_tokens, False), headers=self._headers())
                self._check(resp)
                return _message(resp)

        return self._guard(call)

    def stream(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        client = httpx.Client(timeout=self._timeout)

        def open_stream() -> httpx.Response:
            req = client.build_request("POST", self._url, json=self._body(messages, max_tokens, True),
                                       headers=self._headers())
            resp = client.send(req, stream=True)
            try:
                self._check(resp)
            except Exception:
                resp.close()
                raise
            return resp

        try:
            resp = self._guard(open_stream)
            try:
                if resp.headers.get("content-type", "").startswith("application/json"):
                    resp.read()  # a server that ignores "stream": the whole reply at once
                    yield _message(resp)
                else:
                    yield from _sse_deltas(resp)
            finally:
                resp.close()
        except httpx.HTTPError as e:
            raise BackendError(f"LLM stream broke off: {e}") from e
        finally:
            client.close()

    def _guard(self, fn):
        try:
            return self._retrying(fn)()
        except _Transient as e:
            raise BackendError(f"LLM server at {self._url} kept failing ({e}) after {self._attempts} attempts") from e
        except httpx.TimeoutException as e:
            raise BackendError(f"LLM server at {self._url} timed out") from e
        except httpx.TransportError as e:
            raise BackendError(f"cannot reach LLM server at {self._url}: {e}") from e


def _message(resp: httpx.Response) -> str:
    """The reply text of a non-streamed chat completion."""
    try:
        body = resp.json()
        choice = body["choices"][0]
        text = choice["message"]["content"] or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise BackendError(f"LLM server sent an unexpected reply: {resp.text[:300]}") from e
    _log_end(choice.get("finish_reason"), body.get("usage"))
    return text


def _log_end(finish: str | None, usage: dict | None) -> None:
    if finish == "length":
        log.info("the LLM reply was cut at max_tokens")
    if isinstance(usage, dict):
        log.debug("LLM usage: %s prompt + %s completion tokens", usage.get("prompt_tokens"),
                  usage.get("completion_tokens"))


def _sse_events(resp: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event type, data) per Server-Sent Event; data lines of one event are joined with newlines."""
    kind, data = "message", []
    for line in resp.iter_lines():
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            kind = value.strip() or "message"
        elif field == "error":  # llama.cpp writes a failure inside a stream as an "error:" line
            yield "error", value
    if data:
        yield kind, "\n".join(data)


def _sse_deltas(resp: httpx.Response) -> Iterator[str]:
    """Content deltas from an OpenAI-style Server-Sent Events stream, checked to end properly."""
    finish: str | None = None
    usage = None
    for kind, data in _sse_events(resp):
        if data.strip() == "[DONE]":
            _log_end(finish, usage)
            return
        if kind == "error":
            raise BackendError(f"LLM server failed mid-stream: {data[:300]}")
        try:
            event = json.loads(data)
        except ValueError as e:
            raise BackendError(f"LLM server sent a malformed stream event: {data[:200]}") from e
        if not isinstance(event, dict) or not isinstance(event.get("choices", []), list):
            raise BackendError(f"LLM server sent a malformed stream event: {data[:200]}")
        if event.get("error"):
            raise BackendError(f"LLM server failed mid-stream: {data[:300]}")
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(piece, str) and piece:
                yield piece
            finish = choice.get("finish_reason") or finish
    if finish is None:
        raise BackendError("the LLM stream ended before the reply was complete")
    _log_end(finish, usage)  # some servers end with a finish reason and no [DONE]
