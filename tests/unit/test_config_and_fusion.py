"""Settings validation, scope and file-name checks, and rank fusion."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.engine import check_scope, check_upload_name
from core.errors import InvalidRequest
from core.index.hybrid import rrf


def test_settings_read_nested_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("IMP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMP_CHROMA__URL", "http://chroma:8000")
    monkeypatch.setenv("IMP_SEARCH__CANDIDATES", "80")
    s = Settings()
    assert s.data_dir == tmp_path and s.chroma.url == "http://chroma:8000" and s.search.candidates == 80
    assert s.database_url == f"sqlite:///{tmp_path / 'imp.sqlite3'}"


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
