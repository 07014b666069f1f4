"""Fixtures of the Teams flow tests: the fakes on 127.0.0.1 and IMP's app with its Teams front door."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app import build_teams
from bot.api import create_app
from tests.fakes.bot_connector import GRAPH_SCOPE, FakeBotConnector
from tests.fakes.bot_identity import FakeBotIdentity
from tests.fakes.graph import FakeGraph
from tests.fakes.sharepoint import FakeFileHost
from tests.integration.teams.rig import (
    ADELE, APP_ID, GUEST, MEGAN, PLANNING, PRIVATE, SECRET, TEAM, TEAM_GROUP, TENANT, TeamsRig, member,
    personal,
)


@pytest.fixture
def teams_fakes():
    with FakeBotIdentity() as identity, FakeBotConnector(APP_ID, SECRET, tenant_id=TENANT) as connector, \
            FakeFileHost() as files, \
            FakeGraph(files, lambda auth: connector.token_ok(auth, GRAPH_SCOPE), home_group=TEAM_GROUP) as graph:
        everyone = [member(u) for u in (MEGAN, ADELE, GUEST)]
        connector.add_conversation(TEAM, everyone)
        connector.add_conversation(PLANNING, everyone)
        connector.add_conversation(PRIVATE, [member(MEGAN)])
        graph.set_channel_drive(TEAM_GROUP, PRIVATE, graph.site_drive("Launch-Private"))  # its own site, as Teams
        for user in (MEGAN, ADELE, GUEST):
            connector.add_conversation(personal(user), [member(user)])
        yield identity, connector, files, graph


def make_teams_rig(engine, settings, fakes) -> tuple[TeamsRig, TestClient]:
    identity, connector, files, graph = fakes
    settings.teams.app_id = APP_ID
    settings.teams.app_password = SecretStr(SECRET)
    settings.teams.tenant_id = TENANT
    settings.teams.openid_metadata_url = identity.metadata_url
    settings.teams.token_url = connector.token_url
    settings.teams.poll_s = 0.2
    settings.teams.graph_url = graph.url
    settings.teams.extra_hosts = [f"127.0.0.1:{connector.port}", files.host_entry, graph.host_entry]
    bot = build_teams(settings, engine)
    http = TestClient(create_app(engine, teams=bot))
    return TeamsRig(http, bot, engine, identity, connector, files, graph), http


@pytest.fixture
def teams(engine, settings, teams_fakes):
    rig, http = make_teams_rig(engine, settings, teams_fakes)
    with http:
        yield rig
