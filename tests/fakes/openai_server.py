"""A fake OpenAI-compatible chat server: real HTTP on 127.0.0.1, scripted or echoing replies.

Without a script it behaves like a tiny, honest model: it answers with the
first sentence of source [1] in the prompt and cites it, or NOT FOUND when the
prompt has no sources. Scripted replies let a test make it cite sources that do
not exist, fail with 500 or 429, or rewrite a follow-up question. Every request
is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.fakes.net import QuietHTTPServer


@dataclass
class Reply:
    content: str | None = None  # None: answer like the echo model
    status: int = 200
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass
class FakeOpenAI:
    script: deque = field(default_factory=deque)
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                reply = fake.script.popleft() if fake.script else Reply()
                time.sleep(reply.delay_s)
                if reply.status != 200:
                    self.send_response(reply.status)
                    if reply.retry_after is not None:
                        self.send_header("Retry-After", str(reply.retry_after))
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "scripted failure"}}')
                    return
                text = reply.content if reply.content is not None else echo_answer(body["messages"])
                if body.get("stream"):
                    self._stream(text, body["model"])
                else:
                    payload = {"id": "fake", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}]}
                    data = json.dumps(payload).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def _stream(self, text: str, model: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for piece in re.findall(r"\S+\s*", text):
                    event = {"id": "fake", "object": "chat.completion.chunk", "model": model,
                             "choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def echo_answer(messages: list[dict]) -> str:
    prompt = messages[-1]["content"]
    match = re.search(r"^\[1\] [^\n]*\n(.+?)(?:\n\n\[2\]|\n\nQuestion:)", prompt, re.S | re.M)
    if not match:
        return "NOT FOUND"
    first = re.split(r"(?<=[.!?])\s", match.group(1).strip().replace("\n", " "), maxsplit=1)[0]
    return f"{first.rstrip('.')} [1]."
