"""The evaluation gate's rule: a better hit@5 by the margin, MRR@10 not lower, and equal is not better."""

from __future__ import annotations

from training.gate import decide
from training.metrics import hit_at, mrr_at, pooled, recall_at


def m(hit: float, mrr: float) -> dict:
    return {"hit@5": hit, "recall@5": hit, "mrr@10": mrr}


def test_a_gain_at_the_margin_with_mrr_held_is_promoted():
    ok, why = decide(m(0.50, 0.40), m(0.52, 0.40), min_gain=0.01)
    assert ok and "0.500 -> 0.520" in why


def test_a_gain_below_the_margin_is_refused_and_names_the_setting():
    ok, why = decide(m(0.50, 0.40), m(0.505, 0.45), min_gain=0.01)
    assert not ok and "IMP_TRAIN__MIN_GAIN" in why


def test_a_hit_gain_that_costs_mrr_is_refused():
    ok, why = decide(m(0.50, 0.40), m(0.60, 0.39), min_gain=0.01)
    assert not ok and "MRR@10 dropped" in why


def test_with_no_margin_an_equal_candidate_is_still_not_better():
    assert not decide(m(1.0, 0.8), m(1.0, 0.8), min_gain=0.0)[0]
    assert decide(m(1.0, 0.8), m(1.0, 0.85), min_gain=0.0)[0]


def test_ranked_list_metrics():
    found = [False, False, True, False, True]
    assert hit_at(found, 2) == 0.0 and hit_at(found, 3) == 1.0
    assert mrr_at(found, 10) == 1 / 3 and mrr_at(found, 2) == 0.0
    assert recall_at([{0}, set(), {1}, {0}], 5, 4) == 0.5
    assert pooled([{"hit@5": 1.0}, {"hit@5": 0.0}]) == {"hit@5": 0.5, "queries": 2}
