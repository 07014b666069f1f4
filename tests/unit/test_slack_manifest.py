"""The Slack app manifest an admin installs IMP from matches what IMP's code does.

If a listener, a slash command or a Web API call is added in bot/slack without the
manifest following, Slack would silently never send the event, or answer
``missing_scope``: these checks read the code (its AST, not a list kept by hand)
and fail first. The other way round, no scope is requested without a reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from bot.slack.http import PATHS

ROOT = Path(__file__).resolve().parents[2]
SLACK = ROOT / "bot" / "slack"
MANIFEST = SLACK / "manifest.yml"

# Web API method (as slack_sdk names it) -> the bot scopes it needs. A conversation method
# needs the scope of each kind of conversation IMP works in (public, private, DM, group DM).
HISTORY = {"channels:history", "groups:history", "im:history", "mpim:history"}
READ = {"channels:read", "groups:read", "im:read", "mpim:read"}
METHOD_SCOPES: dict[str, set[str]] = {
    "chat_postMessage": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_update": {"chat:write"},
    "reactions_add": {"reactions:write"},
    "reactions_remove": {"reactions:write"},
    "files_info": {"files:read"},
    "files_upload_v2": {"files:write"},  # files.getUploadURLExternal + files.completeUploadExternal
    "conversations_history": HISTORY,
    "conversations_replies": HISTORY,
    "conversations_members": READ,
    "conversations_info": READ,  # whether a channel is shared with another organisation (Slack Connect)
    "auth_test": set(),  # IMP's own workspace and organisation: who is a member, who is external
    "users_conversations": READ,
    "users_info": {"users:read"},
}
# Bot event subscription -> the scope Slack requires for it.
EVENT_SCOPES: dict[str, set[str]] = {
    "app_mention": {"app_mentions:read"},
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "message.im": {"im:history"},
    "message.mpim": {"mpim:history"},
    "reaction_added": {"reactions:read"},
    "reaction_removed": {"reactions:read"},
    "file_deleted": {"files:read"},
    "file_unshared": {"files:read"},
    "assistant_thread_started": {"assistant:write"},
    "assistant_thread_context_changed": {"assistant:write"},
}
MESSAGE_EVENTS = {"message.channels", "message.groups", "message.im", "message.mpim"}
# Needed outside any single method: slash commands, and downloading url_private files.
OTHER_SCOPES = {"commands", "files:read"}
# The keys Slack's manifest schema (major version 2) allows in the sections IMP uses.
ALLOWED_KEYS = {
    "": {"_metadata", "display_information", "features", "oauth_config", "settings"},
    "display_information": {"name", "description", "background_color", "long_description"},
    "features": {"app_home", "bot_user", "assistant_view", "slash_commands", "shortcuts", "unfurl_domains"},
    "features.app_home": {"home_tab_enabled", "messages_tab_enabled", "messages_tab_read_only_enabled"},
    "features.bot_user": {"display_name", "always_online"},
    "features.assistant_view": {"assistant_description", "suggested_prompts"},
    "oauth_config": {"scopes", "redirect_urls"},
    "oauth_config.scopes": {"bot", "user"},
    "settings": {"event_subscriptions", "interactivity", "org_deploy_enabled", "socket_mode_enabled",
                 "token_rotation_enabled"},
    "settings.event_subscriptions": {"request_url", "bot_events"},
    "settings.interactivity": {"is_enabled", "request_url"},
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def _calls(files: list[Path]) -> list[ast.Call]:
    return [node for f in files for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call)]


def _slack_sources() -> list[Path]:
    return sorted(SLACK.glob("*.py"))


def _registrations(kind: str) -> list[ast.expr]:
    """The first argument of every ``app.<kind>(...)`` call in bot/slack."""
    return [c.args[0] for c in _calls(_slack_sources())
            if isinstance(c.func, ast.Attribute) and c.func.attr == kind
            and isinstance(c.func.value, ast.Name) and c.func.value.id == "app" and c.args]


def _event_types() -> set[str]:
    types = set()
    for arg in _registrations("event"):
        value = ast.literal_eval(arg)
        types.add(value["type"] if isinstance(value, dict) else value)
    return types


def _web_api_methods() -> set[str]:
    """Web API methods IMP calls on a client (``client.x(...)``, ``deps.client.x(...)`` ...): the names
    slack_sdk's WebClient defines (a Socket Mode client's ``is_connected`` is not one), and ``api_call``,
    which hides the method in a string and so fails the scope check until it is listed."""
    found = set()
    entry_points = [p for p in (ROOT / "app.py", ROOT / "cli.py") if p.exists()]
    for c in _calls([*_slack_sources(), *entry_points]):
        func = c.func
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if name in ("client", "_client") and (func.attr in vars(WebClient) or func.attr == "api_call"):
            found.add(func.attr)
    return found


def _bot_scopes(manifest: dict) -> set[str]:
    return set(manifest["oauth_config"]["scopes"]["bot"])


def test_manifest_uses_only_keys_slack_knows(manifest: dict) -> None:
    assert manifest["_metadata"] == {"major_version": 2, "minor_version": 1}
    for path, allowed in ALLOWED_KEYS.items():
        section = manifest
        for part in filter(None, path.split(".")):
            section = section[part]
        assert set(section) <= allowed, f"{path or 'top level'}: unknown keys {set(section) - allowed}"
    assert len(manifest["display_information"]["name"]) <= 35
    assert len(manifest["display_information"]["description"]) <= 140
    for command in manifest["features"]["slash_commands"]:
        assert set(command) <= {"command", "url", "description", "usage_hint", "should_escape"}
        assert command["should_escape"] is False  # IMP parses file links as typed, not escaped
    prompts = manifest["features"]["assistant_view"]["suggested_prompts"]
    assert all(set(p) == {"title", "message"} for p in prompts)


def test_every_registered_slash_command_is_declared_with_imps_url(manifest: dict) -> None:
    registered = {ast.literal_eval(arg) for arg in _registrations("command")}
    assert registered == {"/ask", "/minutes"}
    declared = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(declared) == registered
    for command in declared.values():
        assert command["url"] == "https://YOUR-HOST/slack/commands"
        assert command["description"] and command["usage_hint"]


def test_every_event_imp_listens_to_is_subscribed(manifest: dict) -> None:
    subscribed = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    for event_type in _event_types():
        if event_type == "message":  # Slack delivers messages per kind of conversation
            assert MESSAGE_EVENTS <= subscribed
        else:
            assert event_type in subscribed, f"IMP listens to {event_type} but the manifest does not subscribe"
    assert {"app_mention", "reaction_added", "reaction_removed", "file_deleted",
            "assistant_thread_started", "assistant_thread_context_changed"} <= _event_types()
    # and nothing is subscribed that no listener handles
    for event_type in subscribed:
        assert ("message" if event_type in MESSAGE_EVENTS else event_type) in _event_types(), event_type


def test_urls_point_at_imps_endpoints(manifest: dict) -> None:
    settings = manifest["settings"]
    urls = {settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(c["url"] for c in manifest["features"]["slash_commands"])}
    assert {u.removeprefix("https://YOUR-HOST") for u in urls} == set(PATHS)
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False and settings["org_deploy_enabled"] is False


def test_every_web_api_method_imp_calls_has_its_scope(manifest: dict) -> None:
    called = _web_api_methods()
    assert {"chat_postMessage", "files_info", "users_conversations"} <= called  # the scan finds calls
    unknown = called - set(METHOD_SCOPES)
    assert not unknown, f"add the scopes of {unknown} to METHOD_SCOPES and to the manifest"
    scopes = _bot_scopes(manifest)
    for method in called:
        assert METHOD_SCOPES[method] <= scopes, f"{method} needs {METHOD_SCOPES[method] - scopes}"


def test_events_and_commands_have_their_scopes_and_no_scope_is_unexplained(manifest: dict) -> None:
    scopes = _bot_scopes(manifest)
    subscribed = manifest["settings"]["event_subscriptions"]["bot_events"]
    for event_type in subscribed:
        assert EVENT_SCOPES[event_type] <= scopes, f"{event_type} needs {EVENT_SCOPES[event_type] - scopes}"
    assert OTHER_SCOPES <= scopes
    justified = set().union(*(METHOD_SCOPES[m] for m in _web_api_methods()),
                            *(EVENT_SCOPES[e] for e in subscribed), OTHER_SCOPES)
    assert scopes == justified, f"unexplained scopes: {scopes - justified}"
