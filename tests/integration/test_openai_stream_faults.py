"""How the openai backend reads replies that real servers and proxies send when things go wrong.

A raw HTTP server on 127.0.0.1 sends exactly the bytes a test gives it: a stream cut
short without its end mark, an error event in the middle of a stream, a JSON reply to a
streamed request, SSE events split over several data lines. The scripted fake server
checks that a reply slower than the timeout is asked for once, not again and again.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from core.errors import BackendError
from core.llm.openai_backend import OpenAIGenerator
from core.models import Message
from tests.fakes.net import QuietHTTPServer
from tests.fakes.openai_server import FakeOpenAI, Reply

ASK = [Message("user", "When does firmware 2.4 ship?")]


def _chunk(text: str | None = None, finish: str | None = None) -> str:
    delta = {} if text is None else {"content": text}
    return json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                       "finish_reason": finish}]})


class RawServer:
    """Answers every POST with one fixed body and content type, then closes the connection."""

    def __init__(self, body: str, content_type: str = "text/event-stream"):
        raw = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(raw)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(raw)

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _stream(body: str, content_type: str = "text/event-stream") -> list[str]:
    server = RawServer(body, content_type)
    try:
        return list(OpenAIGenerator(server.base_url, "m", max_retries=0).stream(ASK, max_tokens=16))
    finally:
        server.close()


def test_a_stream_cut_off_cleanly_before_its_end_is_an_error():
    body = f"data: {_chunk('Firmware 2.4 ')}\n\ndata: {_chunk('ships')}\n\n"  # no finish, no [DONE]
    with pytest.raises(BackendError, match="ended before the reply was complete"):
        _stream(body)


def test_a_stream_that_finishes_without_done_is_complete():
    body = f"data: {_chunk('Firmware 2.4 ships on March 6 [1].')}\n\ndata: {_chunk(finish='stop')}\n\n"
    assert "".join(_stream(body)) == "Firmware 2.4 ships on March 6 [1]."


@pytest.mark.parametrize("failure", [
    'error: {"code": 500, "message": "slot crashed"}\n\n',  # llama.cpp
    'event: error\ndata: {"message": "slot crashed"}\n\n',  # SSE event type
    'data: {"error": {"message": "slot crashed", "code": 500}}\n\n',  # vLLM, OpenAI
])
def test_an_error_in_the_middle_of_a_stream_is_reported(failure):
    body = f"data: {_chunk('Firmware ')}\n\n{failure}data: [DONE]\n\n"
    with pytest.raises(BackendError, match="failed mid-stream.*slot crashed"):
        _stream(body)


def test_events_over_several_data_lines_and_comments_are_read_whole():
    event = json.dumps({"choices": [{"index": 0, "delta": {"content": "Firmware 2.4"}, "finish_reason": None}]},
                       indent=1)
    data = "\n".join(f"data: {line}" for line in event.splitlines())
    body = f": keep-alive\n\n{data}\n\ndata: {_chunk(' ships.', 'stop')}\n\ndata: [DONE]\n\n"
    assert _stream(body) == ["Firmware 2.4", " ships."]


def test_a_json_reply_to_a_streamed_request_is_still_the_answer():
    body = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "March 6 [1]."}}]})
    assert _stream(body, "application/json") == ["March 6 [1]."]


@pytest.mark.parametrize("event", ['{"choices": "oops"}', '[1, 2]', '{"choices": [1, {"delta": "x"}]}'])
def test_hostile_stream_events_are_errors_or_ignored_never_crashes(event):
    body = f"data: {event}\n\ndata: {_chunk('ok', 'stop')}\n\ndata: [DONE]\n\n"
    try:
        assert _stream(body) == ["ok"]
    except BackendError as e:
        assert "malformed" in e.detail


def test_a_reply_slower_than_the_timeout_is_asked_for_once():
    fake = FakeOpenAI().start()
    try:
        fake.script.append(Reply("late", delay_s=2.0))
        gen = OpenAIGenerator(fake.base_url, "m", timeout_s=0.5, max_retries=3)
        with pytest.raises(BackendError, match="timed out"):
            gen.complete(ASK, max_tokens=16)
        assert len(fake.requests) == 1  # a busy server is not sent the same work again
    finally:
        fake.stop()
