"""Settings validation, scope and file-name checks, and rank fusion."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.engine import check_scope, check_upload_name
from core.errors import InvalidRequest
from core.index.hybrid import rrf, with_document_prior


def test_settings_read_nested_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("IMP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMP_CHROMA__URL", "http://chroma:8000")
    monkeypatch.setenv("IMP_SEARCH__CANDIDATES", "80")
    s = Settings()
    assert s.data_dir == tmp_path and s.chroma.url == "http://chroma:8000" and s.search.candidates == 80
    assert s.database_url == f"sqlite:///{tmp_path / 'imp.sqlite3'}"


def test_the_drift_interval_takes_the_plans_name_or_the_one_with_its_unit(monkeypatch):
    assert Settings().monitor.interval_s == 3600
    monkeypatch.setenv("IMP_MONITOR__INTERVAL", "600")
    assert Settings().monitor.interval_s == 600
    monkeypatch.delenv("IMP_MONITOR__INTERVAL")
    monkeypatch.setenv("IMP_MONITOR__INTERVAL_S", "900")
    assert Settings().monitor.interval_s == 900
    monkeypatch.setenv("IMP_MONITOR__INTERVAL_S", "5")  # a check every 5 s would keep a node busy
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("token", ["changeme", "secret", "short"])
def test_placeholder_or_short_api_tokens_are_refused(monkeypatch, token):
    monkeypatch.setenv("IMP_API__TOKEN", token)
    with pytest.raises(ValidationError, match="IMP_API__TOKEN"):
        Settings()


def test_api_token_is_never_shown(monkeypatch):
    monkeypatch.setenv("IMP_API__TOKEN", "a-long-enough-real-token")
    s = Settings()
    assert "a-long-enough-real-token" not in repr(s) and "a-long-enough-real-token" not in s.model_dump_json()
    assert s.api.token.get_secret_value() == "a-long-enough-real-token"


@pytest.mark.parametrize("name", ["../x.txt", "a/b.txt", "..\\x.txt", "", "..", "a\x00b.txt", "x" * 300])
def test_unsafe_upload_names_are_refused(name):
    with pytest.raises(InvalidRequest):
        check_upload_name(name)


def test_plain_upload_names_pass():
    assert check_upload_name("Q3 report (final).pdf") == "Q3 report (final).pdf"


@pytest.mark.parametrize("scope", ["", "a b", "../x", "C" * 201])
def test_bad_scopes_are_refused(scope):
    with pytest.raises(InvalidRequest):
        check_scope(scope)


def test_rrf_rewards_agreement_between_rankings():
    fused = rrf([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert max(fused, key=fused.get) == "b"
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["d"] < fused["a"]


def test_weighted_rrf_lets_the_stronger_ranking_decide_disagreements():
    keyword, dense = ["a", "b"], ["b", "a"]
    assert rrf([keyword, dense], k=60)["a"] == pytest.approx(rrf([keyword, dense], k=60)["b"])
    fused = rrf([keyword, dense], k=60, weights=[2.0, 1.0])
    assert max(fused, key=fused.get) == "a"
    assert fused["a"] == pytest.approx(2 / 61 + 1 / 62)


def test_rrf_refuses_a_weight_list_that_does_not_match_the_rankings():
    with pytest.raises(ValueError):
        rrf([["a"], ["b"]], k=60, weights=[1.0])


def test_search_settings_refuse_a_negative_keyword_weight():
    with pytest.raises(ValidationError):
        Settings(search={"keyword_weight": -1})


def test_document_prior_lifts_the_chunk_of_the_document_that_matches_as_a_whole():
    # "a1" (one strong chunk of document A) ties "b1"; document B has a second candidate, so b1 wins.
    scores = {"a1": 0.03, "b1": 0.03, "b2": 0.02}
    doc = {"a1": "A", "b1": "B", "b2": "B"}
    lifted = with_document_prior(scores, doc, 1.0)
    assert max(lifted, key=lifted.get) == "b1"
    assert lifted["b1"] == pytest.approx(0.03 + 0.05) and lifted["a1"] == pytest.approx(0.03 + 0.03)


def test_document_prior_counts_only_a_documents_best_chunks():
    # A long document's many weak candidates must not outweigh a short document's two strong ones.
    scores = {"s1": 0.03, "s2": 0.03, **{f"l{i}": 0.02 for i in range(10)}}
    doc = {"s1": "short", "s2": "short", **{f"l{i}": "long" for i in range(10)}}
    lifted = with_document_prior(scores, doc, 1.0)
    assert min(lifted["s1"], lifted["s2"]) > max(lifted[f"l{i}"] for i in range(10))


def test_document_prior_keeps_the_order_within_one_document_and_drops_unknown_chunks():
    scores = {"c1": 0.01, "c2": 0.03, "c3": 0.02, "stale": 0.05}
    doc = {"c1": "D", "c2": "D", "c3": "D"}
    lifted = with_document_prior(scores, doc, 2.0)
    assert sorted(lifted, key=lifted.get, reverse=True) == ["c2", "c3", "c1"]
    assert with_document_prior(scores, doc, 0.0) == {"c1": 0.01, "c2": 0.03, "c3": 0.02}


def test_document_prior_refuses_a_negative_weight():
    with pytest.raises(ValueError):
        with_document_prior({"a": 1.0}, {"a": "A"}, -1.0)
    with pytest.raises(ValidationError):
        Settings(search={"doc_weight": -0.5})
