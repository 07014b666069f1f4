"""Which registered version serves: promotion, rollback, and the canary's verdict.

The engine's pointer table decides what serves (every replica reads it); the
MLflow aliases say the same for people and tools. A switch is made in the
engine first, since that is the step that can fail (a missing folder, a re-index
that breaks), and only then recorded as an alias, so MLflow never claims a
champion that does not serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidRequest
from training.registry import BASE, CHALLENGER, CHAMPION, EMBEDDER, ModelRegistry, check_name

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: str  # "promote", "keep" (retire the challenger) or "wait" (not enough ratings)
    reason: str
    champion: tuple[int, int]  # (👍, 👎)
    challenger: tuple[int, int]


def served_version(engine: Any, name: str, slot: str = CHAMPION) -> str | None:
    for m in engine.served_models():
        if m.name == name and m.slot == slot:
            return m.version
    return BASE if slot == CHAMPION else None


def promote(engine: Any, registry: ModelRegistry, name: str, version: str, *,
            progress: Progress | None = None, record: bool = True) -> Any:
    """Serve ``version`` of ``name`` as champion (re-indexing for an embedder), then move the alias."""
    check_name(name)
    version = str(version)
    current = served_version(engine, name)
    on_trial = served_version(engine, name, CHALLENGER) == version
    path = None if version == BASE else registry.materialize(name, version)
    report = engine.serve_model(name, version, path, slot=CHAMPION, progress=progress)
    registry.set_alias(name, CHAMPION, version)
    if record:
        history = registry.history(name) or ([current] if current else [])
        if not history or history[-1] != version:
            history.append(version)
        registry.set_history(name, history)
    if on_trial or registry.alias(name, CHALLENGER) == version:  # a promoted challenger is no longer on trial
        if served_version(engine, name, CHALLENGER) == version:
            engine.retire(name, CHALLENGER)
        registry.set_alias(name, CHALLENGER, None)
    log.info("%s version %s is champion (was %s)", name, version, current)
    return report


def rollback(engine: Any, registry: ModelRegistry, name: str, *, progress: Progress | None = None) -> Any:
    """Serve the champion before the current one again (its kept collection only needs the delta)."""
    check_name(name)
    history = registry.history(name)
    current = served_version(engine, name)
    if history and history[-1] == current:
        history = history[:-1]
    if not history:
        if current in (None, BASE):
            raise InvalidRequest(f"{name} has no earlier champion to roll back to")
        history = [BASE]
    previous = history[-1]
    report = promote(engine, registry, name, previous, progress=progress, record=False)
    registry.set_history(name, history)
    return report


def start_canary(engine: Any, registry: ModelRegistry, name: str, version: str, *,
                 progress: Progress | None = None) -> Any:
    """Serve ``version`` as challenger: a share of questions (IMP_MODELS__CANARY_SHARE) goes to it."""
    check_name(name)
    report = engine.serve_model(name, str(version), registry.materialize(name, str(version)),
                                slot=CHALLENGER, progress=progress)
    registry.set_alias(name, CHALLENGER, str(version))
    return report


def verdict(engine: Any, name: str = EMBEDDER, *, min_ratings: int) -> Verdict:
    """Promote when the challenger's 👍 rate is not worse than the champion's, each over ``min_ratings``."""
    champion, challenger = served_version(engine, name), served_version(engine, name, CHALLENGER)
    counts = engine.feedback_by_version(name)
    ch = counts.get(champion or BASE, (0, 0))
    cl = counts.get(challenger, (0, 0)) if challenger else (0, 0)
    if challenger is None:
        return Verdict("wait", "no challenger is served", ch, cl)
    n_ch, n_cl = sum(ch), sum(cl)
    if n_ch < min_ratings or n_cl < min_ratings:
        return Verdict("wait", f"ratings so far: champion {n_ch}, challenger {n_cl}; each needs {min_ratings} "
                               "(IMP_MODELS__CANARY_MIN_RATINGS)", ch, cl)
    rate_ch, rate_cl = ch[0] / n_ch, cl[0] / n_cl
    if rate_cl >= rate_ch:
        return Verdict("promote", f"challenger 👍 rate {rate_cl:.2f} over {n_cl} ratings is not worse than the "
                                  f"champion's {rate_ch:.2f} over {n_ch}", ch, cl)
    return Verdict("keep", f"challenger 👍 rate {rate_cl:.2f} over {n_cl} ratings is below the champion's "
                           f"{rate_ch:.2f} over {n_ch}", ch, cl)


def settle_canary(engine: Any, registry: ModelRegistry, name: str = EMBEDDER, *, min_ratings: int,
                  progress: Progress | None = None) -> Verdict:
    """Act on the verdict: promote the challenger, or retire it when it rates worse."""
    v = verdict(engine, name, min_ratings=min_ratings)
    challenger = served_version(engine, name, CHALLENGER)
    if v.decision == "promote" and challenger is not None:
        promote(engine, registry, name, challenger, progress=progress)
    elif v.decision == "keep" and challenger is not None:
        engine.retire(name, CHALLENGER)
        registry.set_alias(name, CHALLENGER, None)
    return v
