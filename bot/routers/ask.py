"""Question answering: POST /v1/ask, its Server-Sent Events variant, and stored answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep
from bot.schemas import AnswerOut, AskIn, errors, public_error

router = APIRouter(tags=["answers"])


@router.post("/ask", response_model=AnswerOut, responses=errors(403))
def ask(body: AskIn, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)]) -> AnswerOut:
    """Answer from the documents in ``scopes``, citing them; or say plainly that they do not answer it."""
    answer = engine.ask(body.question, grant.require(body.scopes), body.messages())
    return AnswerOut.of(answer)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/ask/stream", responses=errors(403) | {200: {"content": {"text/event-stream": {}}}})
def ask_stream(body: AskIn, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)]) -> StreamingResponse:
    """The answer as Server-Sent Events: ``token`` events while it is written, then one ``answer``
    event with the validated answer (authoritative: unsupported sentences and bad citations are
    removed from it), or an ``error`` event with ``{code, detail}``."""
    events = engine.ask_stream(body.question, grant.require(body.scopes), body.messages())

    def gen() -> Iterator[str]:
        try:
            for event in events:
                if event.kind == "token":
                    yield _sse("token", {"text": event.text})
                elif event.answer is not None:
                    yield _sse("answer", AnswerOut.of(event.answer).model_dump())
        except Exception as e:  # the 200 is sent: the error becomes an event, shown as the REST edge shows it
            _, code, detail = public_error(e)
            yield _sse("error", {"code": code, "detail": detail})

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


@router.get("/answers/{answer_id}", response_model=AnswerOut, responses=errors(404))
def get_answer(answer_id: str, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)]) -> AnswerOut:
    """A stored answer, if every scope it was asked in is one the token opens; otherwise 404."""
    return AnswerOut.of(engine.answer(answer_id, scopes=grant.visible))
