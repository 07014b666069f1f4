"""Finding a file posted in a Teams channel through Microsoft Graph (bot.teams.graph), over real HTTP: the
fake token endpoint issues a Graph token, the fake Graph answers the driveItem, the fake SharePoint serves
the bytes behind its download link, and TeamsFiles downloads them as it does a 1:1 chat's file.

Each refusal is checked for what a user or an operator would notice: the reason, which requests went out
(and with which token), and that neither a download link's credential nor the file's place reached the logs.
Then the check that a file is kept where its conversation keeps its files (bot.teams.file_places), against
the drives the fake Graph answers for a channel's files folder and a person's OneDrive.
"""

from __future__ import annotations

import logging

import pytest

from bot.teams.events import SharedFile
from bot.teams.file_links import FileHostRefused, UnusableAttachment
from bot.teams.file_places import FileElsewhere, FilePlaces
from bot.teams.files import TeamsFile, TeamsFiles
from bot.teams.graph import (
    GRAPH_SCOPE,
    GraphAccessDenied,
    GraphBusy,
    GraphFileNotFound,
    GraphFiles,
    GraphPlaceUnknown,
    GraphUnavailable,
    share_id,
)
from bot.teams.token import BotTokenProvider
from core.errors import InvalidRequest, NotFound
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.graph import HOME_GROUP, FakeGraph, shared_url_of
from tests.fakes.sharepoint import FakeFileHost

PLACE = "https://contoso.sharepoint.com/sites/Launch/Shared%20Documents/Planning/rollout%20plan.md"
NOTE = b"# Rollout\n\nThe Zanzibar pilot starts on 14 May in the Lisbon office.\n"
CHANNEL = "19:4a1b2c3d5e6f40718293a4b5c6d7e8f9@thread.tacv2"
IN_CHANNEL = {"kind": "channel", "group": HOME_GROUP, "channel": CHANNEL}


@pytest.fixture
def fakes():
    with FakeBotConnector() as connector, FakeFileHost() as files, \
            FakeGraph(files, lambda auth: connector.token_ok(auth, GRAPH_SCOPE)) as graph:
        yield connector, files, graph


def graph_files(connector: FakeBotConnector, files: FakeFileHost, graph: FakeGraph, **kwargs) -> GraphFiles:
    tokens = BotTokenProvider(connector.app_id, connector.app_secret, token_url=connector.token_url, scope=GRAPH_SCOPE)
    return GraphFiles(tokens, graph.url, extra_hosts=[files.host_entry, graph.host_entry], **kwargs)


def shared(place: str = PLACE, name: str = "rollout plan.md") -> SharedFile:
    return SharedFile(name=name, url=place, item_id="5E8A3C21-7B4D-4F1A-9C2E-0D6B8A4F3E19", file_type="md")


def test_a_share_id_is_the_places_unpadded_base64url_and_round_trips():
    for place in (PLACE, "https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1",
                  "https://contoso.sharepoint.com/sites/a/b?c>d"):
        encoded = share_id(place)
        assert encoded.startswith("u!") and not set("=+/") & set(encoded)
        assert shared_url_of(encoded) == place


def test_a_posted_file_is_found_with_a_graph_token_and_downloads_from_its_fresh_link(fakes, tmp_path):
    connector, files, graph = fakes
    item_id = graph.add_file(PLACE, "rollout plan.md", NOTE)
    found = graph_files(connector, files, graph).resolve(shared())
    assert (found.name, found.item_id, found.size, found.file_type) == ("rollout plan.md", item_id, len(NOTE), "md")
    assert "tempauth=" in found.download_url and "tempauth" not in repr(found)
    (call,) = graph.calls_for(PLACE)
    assert call.status == 200 and call.path == f"/v1.0/shares/{share_id(PLACE)}/driveItem"
    assert connector.token_ok(call.headers["authorization"], GRAPH_SCOPE)
    assert not connector.token_ok(call.headers["authorization"])  # a Graph token is no Bot Connector token
    assert [c.body["scope"] for c in connector.calls_to("token")] == [GRAPH_SCOPE]
    downloads = TeamsFiles(tmp_path, 1 << 20, extra_hosts=[files.host_entry])
    with downloads.fetch(TeamsFile.shared_link(found.download_url, found.name, "5E8A3C21")) as staged:
        assert staged.path.read_bytes() == NOTE
    assert all("authorization" not in r.headers for r in files.requests)  # no token to SharePoint


def test_a_refused_token_is_replaced_once(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    finder = graph_files(connector, files, graph)
    finder.resolve(shared())
    connector.revoke_tokens()  # a rotated secret: the cached token stops working
    assert finder.resolve(shared()).size == len(NOTE)
    assert [c.status for c in graph.calls_for(PLACE)] == [200, 401, 200]
    assert len(connector.calls_to("token")) == 2


def test_graph_refusing_the_app_says_which_permission_an_admin_must_grant(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    graph.fail_next(1, 403)
    with pytest.raises(GraphAccessDenied) as caught:
        graph_files(connector, files, graph).resolve(shared())
    assert "Files.Read.All" in caught.value.detail and "admin" in caught.value.detail
    assert files.requests == []  # nothing was downloaded


def test_a_file_graph_does_not_know_is_gone_and_a_folder_is_no_file(fakes):
    connector, files, graph = fakes
    finder = graph_files(connector, files, graph)
    with pytest.raises(GraphFileNotFound) as caught:
        finder.resolve(shared())
    assert isinstance(caught.value, NotFound) and "rollout plan.md" in caught.value.detail
    folder = "https://contoso.sharepoint.com/sites/Launch/Shared%20Documents/Planning"
    graph.add_folder(folder, "Planning")
    with pytest.raises(UnusableAttachment, match="folder"):
        finder.resolve(shared(folder, "Planning"))


def test_throttling_is_waited_out_within_bounds_and_then_given_up_with_a_reason(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    graph.fail_next(2, 429, retry_after="1")
    finder = graph_files(connector, files, graph, attempts=3)
    assert finder.resolve(shared()).size == len(NOTE)
    assert [c.status for c in graph.calls_for(PLACE)] == [429, 429, 200]
    graph.fail_next(3, 503, retry_after="0")
    with pytest.raises(GraphBusy) as caught:
        finder.resolve(shared())
    assert "again in a few minutes" in caught.value.detail
    graph.fail_next(1, 429, retry_after="3600")  # longer than the whole lookup may take: given up at once
    with pytest.raises(GraphBusy):
        graph_files(connector, files, graph, total_timeout_s=5).resolve(shared())


def test_a_redirect_is_not_followed(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    graph.fail_next(1, 302)
    with pytest.raises(GraphUnavailable, match="redirect"):
        graph_files(connector, files, graph).resolve(shared())
    assert len(graph.calls) == 1


def test_only_places_in_sharepoint_or_onedrive_are_looked_up(fakes):
    connector, files, graph = fakes
    with pytest.raises(FileHostRefused):
        graph_files(connector, files, graph).resolve(shared("https://attacker.example/files/plan.md"))
    assert graph.calls == [] and connector.calls == []


@pytest.mark.parametrize("url", ["https://graph.example.com/v1.0/", "http://graph.microsoft.com/v1.0/",
                                 "http://127.0.0.1:9/v1.0/", "https://graph.microsoft.com/v1.0/?x=1"])
def test_a_graph_url_imp_may_not_call_is_refused_when_built(url):
    tokens = BotTokenProvider("app", "secret", token_url="http://127.0.0.1:9/token", scope=GRAPH_SCOPE)
    with pytest.raises(InvalidRequest, match="IMP_TEAMS__GRAPH_URL"):
        GraphFiles(tokens, url)
    GraphFiles(tokens)  # Microsoft's own is allowed


def test_neither_the_download_link_nor_the_files_place_reaches_the_logs(fakes, caplog):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    graph.fail_next(1, 429, retry_after="0")
    with caplog.at_level(logging.DEBUG):
        found = graph_files(connector, files, graph).resolve(shared())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rollout plan.md" in logged
    for secret in (found.download_url.split("?")[1], share_id(PLACE), "Shared%20Documents", "/sites/Launch"):
        assert secret not in logged


def test_a_file_on_its_channels_drive_passes_and_the_drive_is_looked_up_once_a_while(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)  # on the home team's drive
    now = [0.0]
    finder = graph_files(connector, files, graph)
    places = FilePlaces(finder, ttl_s=60, clock=lambda: now[0])
    found = finder.resolve(shared())
    assert found.drive_id == graph.group_drive(HOME_GROUP)
    places.check(found, IN_CHANNEL, found.name)
    places.check(found, IN_CHANNEL, found.name)
    folder = [c for c in graph.calls if c.path.endswith("/filesFolder")]
    assert [c.path for c in folder] == [f"/v1.0/teams/{HOME_GROUP}/channels/19%3A4a1b2c3d5e6f40718293a4b5c6d7e8f9"
                                        "%40thread.tacv2/filesFolder"]
    assert connector.token_ok(folder[0].headers["authorization"], GRAPH_SCOPE)
    now[0] = 61.0
    places.check(found, IN_CHANNEL, found.name)
    assert len([c for c in graph.calls if c.path.endswith("/filesFolder")]) == 2


def test_a_file_kept_anywhere_else_is_refused_with_the_rule(fakes):
    connector, files, graph = fakes
    finder = graph_files(connector, files, graph)
    places = FilePlaces(finder)
    graph.add_file(PLACE, "rollout plan.md", NOTE, drive_id=graph.site_drive("HR"))
    found = finder.resolve(shared())
    for place in (IN_CHANNEL, {"kind": "chat", "user": "aad-megan"}):
        with pytest.raises(FileElsewhere) as caught:
            places.check(found, place, found.name)
        assert "rollout plan.md is elsewhere: upload it here instead" in caught.value.detail
    for place, why in (({"kind": "channel", "group": None, "channel": CHANNEL}, "which team"),
                       ({"kind": "chat", "user": None}, "who sent"), (None, "share it again")):
        with pytest.raises(FileElsewhere, match=why):
            places.check(found, place, found.name)
    mine = graph.add_file(PLACE, "rollout plan.md", NOTE, drive_id=graph.user_drive("aad-megan"))
    found = finder.resolve(shared())
    assert found.item_id == mine
    places.check(found, {"kind": "chat", "user": "aad-megan"}, found.name)  # the sender's own OneDrive
    with pytest.raises(FileElsewhere):
        places.check(found, {"kind": "chat", "user": "aad-adele"}, found.name)


def test_when_graph_cannot_say_where_a_channel_keeps_its_files_the_file_is_refused(fakes):
    connector, files, graph = fakes
    graph.add_file(PLACE, "rollout plan.md", NOTE)
    finder = graph_files(connector, files, graph)
    found = finder.resolve(shared())
    graph.fail_next(1, 404)
    with pytest.raises(GraphPlaceUnknown, match="could not tell me where this channel keeps"):
        FilePlaces(finder).check(found, IN_CHANNEL, found.name)
    graph.fail_next(1, 403)
    with pytest.raises(GraphAccessDenied, match="Files.Read.All"):
        FilePlaces(finder).check(found, IN_CHANNEL, found.name)
