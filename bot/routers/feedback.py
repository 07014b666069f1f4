"""Feedback routes: the 👍/👎 ratings people gave IMP's answers (for monitoring and training)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep
from bot.schemas import FeedbackListOut, FeedbackOut

router = APIRouter(tags=["feedback"])


@router.get("/feedback", response_model=FeedbackListOut)
def list_feedback(
    engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)],
    answer_id: Annotated[str | None, Query(description="Only the ratings of this answer")] = None,
) -> FeedbackListOut:
    """Ratings in force, oldest first, of answers the token may read (asked in scopes it opens);
    a rating whose reaction was removed is not listed."""
    found = engine.feedback(answer_id, scopes=grant.visible)
    return FeedbackListOut(feedback=[FeedbackOut.of(f) for f in found])
