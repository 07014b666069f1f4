"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, TGI) over HTTP.

Requests time out, and transient failures (connection errors, 429, 5xx) are
retried a bounded number of times with backoff, honouring Retry-After. A stream
is retried only until its first token arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt

from core.errors import BackendError
from core.models import Message

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_MAX_WAIT_S = 30.0


class _Transient(Exception):
    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Transient) and exc.retry_after is not None:
        return min(exc.retry_after, _MAX_WAIT_S)
    return min(0.5 * 2 ** (state.attempt_number - 1), _MAX_WAIT_S)


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
            raise BackendError(f"LLM server answered HTTP {resp.status_code}: {resp.text[:300]}")

    def _retrying(self, fn):
        return retry(
            retry=retry_if_exception(lambda e: isinstance(e, _Transient | httpx.TransportError)),
            stop=stop_after_attempt(self._attempts), wait=_wait, reraise=True,
        )(fn)

    def complete(self, messages: list[Message], *, max_tokens: int) -> str:
        def call() -> str:
            with httpx.Client(timeout=self._timeout) as client:
                resp = client.post(self._url, json=self._body(messages, max_tokens, False), headers=self._headers())
                self._check(resp)
                try:
                    return resp.json()["choices"][0]["message"]["content"] or ""
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    raise BackendError(f"LLM server sent an unexpected reply: {resp.text[:300]}") from e

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


def _sse_deltas(resp: httpx.Response) -> Iterator[str]:
    """Content deltas from an OpenAI-style Server-Sent Events stream."""
    for line in resp.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as e:
            raise BackendError(f"LLM server sent a malformed stream event: {data[:200]}") from e
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece
