"""The statistics of the drift check: two windows in, one verdict per signal out (numpy only).

Every signal compares the newest window with the one before it, or the newest one with an
absolute threshold, and says whether it drifted:

- ``query_embedding``: MMD² between the questions' embeddings (RBF kernel, median-heuristic
  bandwidth), with a permutation p-value; its threshold is the permutation null's
  (1 - alpha) quantile, so a score above it is a significant shift.
- ``best_similarity``: the drop of the mean best-hit similarity, with a one-sided Welch test.
- ``abstain_rate``, ``down_rate``: the rise of a rate, with a one-sided two-proportion z-test.
- ``latency_p95``: the newest window's p95 answer latency against an absolute threshold.
- ``ingest_failure_rate``: the newest window's share of failed ingests against an absolute
  threshold (the z-test against the window before is reported, not required).

A window with too little data never counts as drift; the signal says so in its detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

QUERY_EMBEDDING = "query_embedding"
BEST_SIMILARITY = "best_similarity"
ABSTAIN_RATE = "abstain_rate"
DOWN_RATE = "down_rate"
LATENCY_P95 = "latency_p95"
INGEST_FAILURE_RATE = "ingest_failure_rate"
# Every signal, in report order: a bounded label set (metrics label them by name).
SIGNALS = (QUERY_EMBEDDING, BEST_SIMILARITY, ABSTAIN_RATE, DOWN_RATE, LATENCY_P95, INGEST_FAILURE_RATE)
# Signals retraining can answer; latency and ingest failures call for an operator, not a new model.
RETRAINABLE = frozenset({QUERY_EMBEDDING, BEST_SIMILARITY, ABSTAIN_RATE, DOWN_RATE})

MIN_SAMPLES = 10  # fewer observations than this in a window: not enough data to say anything
MAX_MMD_SAMPLES = 1000  # per window: the kernel matrix is (2n)², so larger windows are subsampled

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Thresholds of the check (core.config.MonitorSettings, as app.py hands them over)."""

    mmd_p_value: float = 0.01
    permutations: int = 200
    down_rate_rise: float = 0.10
    abstain_rate_rise: float = 0.10
    best_similarity_drop: float = 0.05
    latency_p95_ms: float = 500.0
    ingest_failure_rate: float = 0.005
    # Significance level of the rate and mean tests (a rise must be both this significant and this large).
    alpha: float = 0.01
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal's verdict. ``score`` is None when a window had too little data."""

    name: str
    score: float | None
    threshold: float
    p_value: float | None
    drifted: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "threshold": self.threshold, "p_value": self.p_value,
                "drifted": self.drifted, "detail": self.detail}


def _r(x: float | None, digits: int = 6) -> float | None:
    """Rounded, and None for anything not finite (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _too_little(name: str, threshold: float, n_recent: int, n_previous: int, what: str,
                needed: int = MIN_SAMPLES) -> Signal:
    return Signal(name, None, threshold, None, False,
                  {"n_recent": n_recent, "n_previous": n_previous,
                   "note": f"not enough data: {needed} {what} needed in each window"})


# -- kernel two-sample test ------------------------------------------------------------


def _sq_distances(z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", z, z)
    d = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d, 0.0, out=d)
    return d


def _mmd2_from_sums(sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD² from kernel sums (diagonal excluded from sxx and syy)."""
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int, seed: int = 0,
             alpha: float = 0.01) -> tuple[float, float, float, float]:
    """MMD² of samples ``x`` (n×d) and ``y`` (m×d), its permutation p-value, the null's (1-alpha) quantile,
    and the kernel bandwidth (median pairwise distance of the pooled sample)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("each sample needs at least two rows")
    z = np.concatenate([x, y])
    d = _sq_distances(z)
    off = d[~np.eye(len(z), dtype=bool)]
    median = float(np.median(off))
    if median <= 0.0:  # every point identical: no spread to measure a shift against
        median = float(off.max()) if off.size and off.max() > 0 else 1.0
    k = np.exp(-d / (2.0 * median))
    np.fill_diagonal(k, 0.0)
    # Row i of ``s`` marks which pooled points form the first sample; row 0 is the observed split.
    rng = np.random.default_rng(seed)
    s = np.zeros((permutations + 1, n + m))
    s[0, :n] = 1.0
    for i in range(1, permutations + 1):
        s[i, rng.permutation(n + m)[:n]] = 1.0
    ks = s @ k
    sxx = np.einsum("ij,ij->i", ks, s)
    total = k.sum()
    row_x = ks.sum(axis=1)  # Σ over first-sample rows, all columns
    sxy = row_x - sxx
    syy = total - 2.0 * sxy - sxx
    stats = _mmd2_from_sums(sxx, syy, sxy, n, m)
    observed, null = float(stats[0]), stats[1:]
    p = (1.0 + float(np.sum(null >= observed))) / (1.0 + permutations)
    return observed, p, float(np.quantile(null, 1.0 - alpha)), math.sqrt(median)


def subsample(items: Sequence[T], limit: int, seed: int) -> list[T]:
    """At most ``limit`` of ``items``, drawn with a fixed seed, in their order (all of them when few enough)."""
    if len(items) <= limit:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    return [items[i] for i in keep]


def embedding_signal(recent: np.ndarray, previous: np.ndarray, config: DriftConfig, *,
                     counts: tuple[int, int] | None = None) -> Signal:
    """Whether the newest questions are about something else than the ones before (MMD permutation test).

    At most ``MAX_MMD_SAMPLES`` rows of each window are compared; ``counts`` gives the windows' full
    sizes when the caller subsampled them already (it embeds only what is compared).
    """
    n, m = counts or (len(recent), len(previous))
    if len(recent) < MIN_SAMPLES or len(previous) < MIN_SAMPLES:
        return _too_little(QUERY_EMBEDDING, config.mmd_p_value, n, m, "questions")
    x = np.asarray(subsample(np.asarray(recent), MAX_MMD_SAMPLES, config.seed))
    y = np.asarray(subsample(np.asarray(previous), MAX_MMD_SAMPLES, config.seed + 1))
    score, p, critical, bandwidth = mmd_test(x, y, permutations=config.permutations, seed=config.seed,
                                             alpha=config.mmd_p_value)
    detail = {"n_recent": n, "n_previous": m, "bandwidth": _r(bandwidth), "permutations": config.permutations,
              "alpha": config.mmd_p_value}
    if len(x) < n or len(y) < m:
        detail["compared"] = [len(x), len(y)]
    return Signal(QUERY_EMBEDDING, _r(score), _r(critical), _r(p), p < config.mmd_p_value, detail)


# -- rates and means -----------------------------------------------------------------


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def rise_z_test(hits_recent: int, n_recent: int, hits_previous: int, n_previous: int) -> float:
    """One-sided two-proportion z-test p-value that the recent rate is higher than the previous one."""
    p1, p0 = hits_recent / n_recent, hits_previous / n_previous
    pooled = (hits_recent + hits_previous) / (n_recent + n_previous)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_recent + 1.0 / n_previous))
    if se == 0.0:  # both rates 0 or both 1: no evidence of a rise
        return 1.0
    return _normal_sf((p1 - p0) / se)


def rate_signal(name: str, hits_recent: int, n_recent: int, hits_previous: int, n_previous: int, *,
                min_rise: float, alpha: float, what: str) -> Signal:
    """A rate that drifted when it rose by at least ``min_rise`` and significantly (one-sided z-test)."""
    if n_recent < MIN_SAMPLES or n_previous < MIN_SAMPLES:
        return _too_little(name, min_rise, n_recent, n_previous, what)
    recent, previous = hits_recent / n_recent, hits_previous / n_previous
    p = rise_z_test(hits_recent, n_recent, hits_previous, n_previous)
    rise = recent - previous
    return Signal(name, _r(rise), min_rise, _r(p), rise >= min_rise and p < alpha,
                  {"recent": _r(recent), "previous": _r(previous), "n_recent": n_recent, "n_previous": n_previous})


def drop_signal(name: str, recent: np.ndarray, previous: np.ndarray, *, min_drop: float, alpha: float,
                what: str) -> Signal:
    """A mean that drifted when it fell by at least ``min_drop`` and significantly (one-sided Welch test,
    normal approximation)."""
    n, m = len(recent), len(previous)
    if n < MIN_SAMPLES or m < MIN_SAMPLES:
        return _too_little(name, min_drop, n, m, what)
    a, b = np.asarray(recent, dtype=np.float64), np.asarray(previous, dtype=np.float64)
    drop = float(b.mean() - a.mean())
    se = math.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / m)
    p = (0.0 if drop > 0 else 1.0) if se == 0.0 else _normal_sf(drop / se)
    return Signal(name, _r(drop), min_drop, _r(p), drop >= min_drop and p < alpha,
                  {"recent": _r(float(a.mean())), "previous": _r(float(b.mean())), "n_recent": n, "n_previous": m})


def latency_signal(recent_ms: np.ndarray, config: DriftConfig) -> Signal:
    """The newest window's p95 answer latency against the absolute threshold."""
    n = len(recent_ms)
    if n < MIN_SAMPLES:
        return Signal(LATENCY_P95, None, config.latency_p95_ms, None, False,
                      {"n_recent": n, "note": f"not enough data: {MIN_SAMPLES} timed answers needed"})
    p95 = float(np.percentile(np.asarray(recent_ms, dtype=np.float64), 95))
    return Signal(LATENCY_P95, _r(p95, 1), config.latency_p95_ms, None, p95 > config.latency_p95_ms,
                  {"n_recent": n, "p50_ms": _r(float(np.percentile(recent_ms, 50)), 1)})


def ingest_signal(failed_recent: int, n_recent: int, failed_previous: int, n_previous: int,
                  config: DriftConfig) -> Signal:
    """The newest window's share of failed ingests against the absolute threshold."""
    if n_recent < MIN_SAMPLES:
        return Signal(INGEST_FAILURE_RATE, None, config.ingest_failure_rate, None, False,
                      {"n_recent": n_recent, "note": f"not enough data: {MIN_SAMPLES} ingests needed"})
    rate = failed_recent / n_recent
    p = rise_z_test(failed_recent, n_recent, failed_previous, n_previous) if n_previous else None
    detail: dict[str, Any] = {"failed": failed_recent, "n_recent": n_recent, "n_previous": n_previous}
    if n_previous:
        detail["previous"] = _r(failed_previous / n_previous)
    return Signal(INGEST_FAILURE_RATE, _r(rate), config.ingest_failure_rate, _r(p),
                  rate > config.ingest_failure_rate, detail)
