"""Question answering: POST /v1/ask, its Server-Sent Events variant, and stored answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from bot.schemas import AnswerOut, AskIn, ErrorOut
from core.errors import ImpError

log = logging.getLogger(__name__)

router = APIRouter(tags=["answers"])

_ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 503: {"model": ErrorOut}}


@router.post("/ask", response_model=AnswerOut, responses=_ERRORS)
def ask(body: AskIn, request: Request) -> AnswerOut:
    """Answer from the documents in ``scopes``, citing them; or say plainly that they do not answer it."""
    answer = request.app.state.engine.ask(body.question, body.scopes, body.messages())
    return AnswerOut.of(answer)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/ask/stream", responses=_ERRORS | {200: {"content": {"text/event-stream": {}}}})
def ask_stream(body: AskIn, request: Request) -> StreamingResponse:
    """The answer as Server-Sent Events: ``token`` events while it is written, then one ``answer``
    event with the validated answer (authoritative: unsupported sentences and bad citations are
    removed from it), or an ``error`` event."""
    events = request.app.state.engine.ask_stream(body.question, body.scopes, body.messages())

    def gen() -> Iterator[str]:
        try:
            for event in events:
                if event.kind == "token":
                    yield _sse("token", {"text": event.text})
                elif event.answer is not None:
                    yield _sse("answer", AnswerOut.of(event.answer).model_dump())
        except ImpError as e:
            yield _sse("error", {"code": e.code, "detail": e.detail})
        except Exception:
            log.exception("streamed answer failed")
            yield _sse("error", {"code": "internal_error", "detail": "internal error; the server log has details"})

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


@router.get("/answers/{answer_id}", response_model=AnswerOut, responses={404: {"model": ErrorOut}})
def get_answer(answer_id: str, request: Request) -> AnswerOut:
    return AnswerOut.of(request.app.state.engine.answer(answer_id))
