"""POST /api/messages: where Bot Framework delivers Teams activities to IMP.

The body is read up to ``MAX_BODY`` (Teams' activities are far smaller), parsed as JSON, and handed
with the Authorization header to ``TeamsBot.receive`` on a worker thread (it checks the token before
anything else). Refusals are ``{code, detail}`` with the status the check chose: 401 for a token that is
missing, forged, expired or for another bot, 403 for an activity from another tenant or channel, 400 for
a malformed one; nothing runs for any of them.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.teams.auth import TeamsAuthError
from bot.teams.bot import TeamsBot
from bot.teams.fields import InvalidActivity
from core.errors import ImpError, InvalidRequest

MAX_BODY = 256 << 10
PATH = "/api/messages"


def _refuse(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status)


def teams_router(bot: TeamsBot) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post(PATH)
    async def messages(request: Request) -> Response:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                return _refuse(413, "too_large", "an activity is never this large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None  # the token is still checked first: an anonymous caller learns nothing about the body
        try:
            answer = await run_in_threadpool(bot.receive, body, request.headers.get("authorization"))
        except TeamsAuthError as e:
            headers = {"www-authenticate": "Bearer"} if e.status == 401 else None
            return JSONResponse({"code": e.code, "detail": e.detail}, status_code=e.status, headers=headers)
        except InvalidActivity as e:
            return _refuse(e.status, e.code, e.detail)
        except InvalidRequest as e:
            return _refuse(400, e.code, e.detail)
        except ImpError as e:  # the signing keys could not be read: nothing was checked, so nothing ran
            return _refuse(503, e.code, e.detail)
        if answer is None:
            return Response(status_code=200)
        return JSONResponse(answer.get("body"), status_code=int(answer.get("status", 200)))

    return router
