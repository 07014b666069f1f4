"""`imp teams manifest`: the package a tenant admin uploads, written from the command line."""

from __future__ import annotations

import json
import zipfile

from typer.testing import CliRunner

from cli import cli

APP_ID = "5f2b9c1e-4a7d-4e2b-9c3a-1b2c3d4e5f60"


def test_the_command_writes_an_uploadable_package_for_the_configured_bot(tmp_path, monkeypatch):
    monkeypatch.setenv("IMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMP_TEAMS__APP_ID", APP_ID)
    result = CliRunner().invoke(cli, ["teams", "manifest", "--host", "imp.example.com", "--out", str(tmp_path),
                                      "--version", "1.2.0", "--valid-domain", "imp.example.com"])
    assert result.exit_code == 0, result.output
    package = tmp_path / "imp-teams-1.2.0.zip"
    with zipfile.ZipFile(package) as z:
        assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["version"] == "1.2.0"
    assert manifest["bots"][0]["botId"] == APP_ID
    commands = {c["title"] for lst in manifest["bots"][0]["commandLists"] for c in lst["commands"]}
    assert {"ask", "minutes"} <= commands
    assert manifest["validDomains"] == ["imp.example.com"]
    assert manifest["developer"]["websiteUrl"].startswith("https://imp.example.com")


def test_without_an_app_id_or_with_a_bad_one_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("IMP_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    missing = runner.invoke(cli, ["teams", "manifest", "--host", "imp.example.com", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "IMP_TEAMS__APP_ID" in missing.output
    bad = runner.invoke(cli, ["teams", "manifest", "--app-id", "not-a-guid", "--host", "imp.example.com",
                              "--out", str(tmp_path / "x.zip")])
    assert bad.exit_code == 2 and "GUID" in bad.output
    assert not list(tmp_path.glob("*.zip"))
