"""Feedback routes: the 👍/👎 ratings people gave IMP's answers (for monitoring and training)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from bot.schemas import FeedbackListOut, FeedbackOut

router = APIRouter(tags=["feedback"])


@router.get("/feedback", response_model=FeedbackListOut)
def list_feedback(request: Request,
                  answer_id: str | None = Query(None, description="Only the ratings of this answer")) -> FeedbackListOut:
    """Ratings in force, oldest first; a rating whose reaction was removed is not listed."""
    return FeedbackListOut(feedback=[FeedbackOut.of(f) for f in request.app.state.engine.feedback(answer_id)])
