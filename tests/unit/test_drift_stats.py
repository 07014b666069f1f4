"""The drift check's statistics: the kernel two-sample test, rate and mean tests, absolute thresholds."""

from __future__ import annotations

import json

import numpy as np

from ops.monitor.drift import (
    DOWN_RATE,
    INGEST_FAILURE_RATE,
    LATENCY_P95,
    QUERY_EMBEDDING,
    DriftConfig,
    drop_signal,
    embedding_signal,
    ingest_signal,
    latency_signal,
    mmd_test,
    rate_signal,
    subsample,
)

CONFIG = DriftConfig(permutations=200, seed=7)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _cloud(rng: np.random.Generator, n: int, centre: np.ndarray, spread: float = 1.0) -> np.ndarray:
    return _unit(centre + spread * rng.standard_normal((n, len(centre))))


def test_mmd_matches_the_direct_formula():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((9, 5)) + 0.5
    score, p, critical, bandwidth = mmd_test(x, y, permutations=50, seed=0)
    z = np.concatenate([x, y])
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d / (2 * bandwidth**2))
    kxx, kyy, kxy = k[:12, :12], k[12:, 12:], k[:12, 12:]
    direct = ((kxx.sum() - np.trace(kxx)) / (12 * 11) + (kyy.sum() - np.trace(kyy)) / (9 * 8)
              - 2 * kxy.mean())
    assert abs(score - direct) < 1e-9
    assert 1 / 51 <= p <= 1.0 and np.isfinite(critical)


def test_a_shifted_embedding_cloud_is_flagged_and_a_resample_is_not():
    rng = np.random.default_rng(42)
    topic_a, topic_b = _unit(rng.standard_normal((1, 32)))[0] * 3, _unit(rng.standard_normal((1, 32)))[0] * 3
    before = _cloud(rng, 80, topic_a)
    same = _cloud(rng, 80, topic_a)
    shifted = _cloud(rng, 80, 0.5 * topic_a + 0.5 * topic_b)

    drift = embedding_signal(shifted, before, CONFIG)
    assert drift.name == QUERY_EMBEDDING and drift.drifted
    assert drift.p_value < CONFIG.mmd_p_value and drift.score > drift.threshold
    calm = embedding_signal(same, before, CONFIG)
    assert not calm.drifted and calm.p_value > 0.05
    # Same seed, same verdict: the p-value is reproducible.
    assert embedding_signal(shifted, before, CONFIG).p_value == drift.p_value


def test_too_few_questions_is_not_drift_and_says_so():
    rng = np.random.default_rng(0)
    s = embedding_signal(rng.standard_normal((4, 8)), rng.standard_normal((50, 8)) + 5, CONFIG)
    assert not s.drifted and s.score is None and s.p_value is None
    assert "not enough data" in s.detail["note"]


def test_a_rise_in_down_ratings_is_flagged_only_when_large_and_significant():
    rose = rate_signal(DOWN_RATE, 25, 50, 5, 50, min_rise=0.10, alpha=0.01, what="ratings")
    assert rose.drifted and abs(rose.score - 0.4) < 1e-9 and rose.p_value < 0.001
    assert rose.detail["recent"] == 0.5 and rose.detail["previous"] == 0.1
    steady = rate_signal(DOWN_RATE, 6, 50, 5, 50, min_rise=0.10, alpha=0.01, what="ratings")
    assert not steady.drifted
    fell = rate_signal(DOWN_RATE, 1, 50, 25, 50, min_rise=0.10, alpha=0.01, what="ratings")
    assert not fell.drifted and fell.p_value > 0.99  # a fall is not drift
    # Significant but smaller than the configured rise: not drift.
    small = rate_signal(DOWN_RATE, 600, 10000, 100, 10000, min_rise=0.10, alpha=0.01, what="ratings")
    assert small.p_value < 1e-6 and not small.drifted
    few = rate_signal(DOWN_RATE, 5, 5, 0, 50, min_rise=0.10, alpha=0.01, what="ratings")
    assert not few.drifted and "not enough data" in few.detail["note"]


def test_a_drop_in_best_similarity_is_flagged():
    rng = np.random.default_rng(3)
    before = rng.normal(0.62, 0.05, 60)
    assert drop_signal("best_similarity", rng.normal(0.48, 0.05, 60), before, min_drop=0.05, alpha=0.01,
                       what="answers").drifted
    assert not drop_signal("best_similarity", rng.normal(0.62, 0.05, 60), before, min_drop=0.05, alpha=0.01,
                           what="answers").drifted


def test_latency_and_ingest_failures_use_absolute_thresholds():
    fast, slow = np.full(40, 120.0), np.concatenate([np.full(30, 120.0), np.full(10, 900.0)])
    assert not latency_signal(fast, CONFIG).drifted
    s = latency_signal(slow, CONFIG)
    assert s.name == LATENCY_P95 and s.drifted and s.score == 900.0 and s.threshold == 500.0

    ok = ingest_signal(0, 200, 0, 200, CONFIG)
    assert ok.name == INGEST_FAILURE_RATE and not ok.drifted and ok.score == 0.0
    bad = ingest_signal(2, 200, 0, 200, CONFIG)  # 1 % failed, above the plan's 0.5 %
    assert bad.drifted and bad.score == 0.01 and bad.detail["failed"] == 2


def test_signals_are_plain_json_without_nan():
    s = embedding_signal(np.zeros((3, 2)), np.zeros((3, 2)), CONFIG)
    text = json.dumps(s.to_json(), allow_nan=False)
    assert set(json.loads(text)) == {"name", "score", "threshold", "p_value", "drifted", "detail"}


def test_subsampling_is_bounded_and_reproducible():
    items = list(range(5000))
    a, b = subsample(items, 1000, 3), subsample(items, 1000, 3)
    assert a == b and len(a) == 1000 and a == sorted(a)
    assert subsample(items[:10], 1000, 3) == items[:10]
