"""Inbound authentication of Teams requests (bot/teams/auth.py) against a fake Bot Framework identity service.

Every token here is a real RS256 JWT signed with an RSA key made in the test; the keys
travel over real HTTP from tests/fakes/bot_identity.py on 127.0.0.1. Only the cache's
monotonic clock is the test's (injected), so TTLs and rate limits run without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid

import pytest

from bot.teams.auth import BOT_FRAMEWORK_ISSUER, BotFrameworkAuthenticator, TeamsAuthError, accepted_issuers
from bot.teams.signing_keys import SigningKeys
from tests.fakes.bot_identity import JWKS_PATH, METADATA_PATH, FakeBotIdentity

APP_ID = "4f1c2b0e-6a0c-4a53-9a57-2d3b6c1d0e11"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SERVICE_URL = "https://smba.trafficmanager.net/emea/"
TEAMS = "msteams"


class Clock:
    """The signing-key cache's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake():
    with FakeBotIdentity() as f:
        yield f


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_keys(fake: FakeBotIdentity, clock: Clock, **knobs) -> SigningKeys:
    options = dict(ttl_s=3600, refresh_interval_s=60, failure_backoff_s=10, max_stale_s=7200, timeout_s=2)
    options.update(knobs)
    return SigningKeys(fake.metadata_url, clock=clock, **options)


@pytest.fixture
def auth(fake, clock) -> BotFrameworkAuthenticator:
    return BotFrameworkAuthenticator(APP_ID, make_keys(fake, clock))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def refused(auth: BotFrameworkAuthenticator, authorization: str | None, *, service_url: str | None = SERVICE_URL,
            channel_id: str | None = TEAMS) -> TeamsAuthError:
    with pytest.raises(TeamsAuthError) as caught:
        auth.validate(authorization, service_url=service_url, channel_id=channel_id)
    return caught.value


# -- the good path -------------------------------------------------------------------------------------------------
def test_a_bot_connector_token_passes_and_its_keys_are_cached(auth, fake):
    claims = auth.validate(bearer(fake.token(APP_ID, SERVICE_URL)), service_url=SERVICE_URL, channel_id=TEAMS)

    assert claims.issuer == BOT_FRAMEWORK_ISSUER
    assert claims.audience == APP_ID
    assert claims.service_url == SERVICE_URL
    assert claims.key_id == fake.active.kid
    assert claims.expires_at > time.time() + 3000
    assert claims.claims["aud"] == APP_ID
    with pytest.raises(TypeError):
        claims.claims["aud"] = "someone-else"  # read-only

    auth.validate(bearer(fake.token(APP_ID, SERVICE_URL)), service_url=SERVICE_URL.rstrip("/"), channel_id=TEAMS)
    assert (fake.count(METADATA_PATH), fake.count(JWKS_PATH)) == (1, 1)  # the second token used the cached keys


def test_a_token_within_the_clock_skew_passes(auth, fake):
    just_expired = fake.token(APP_ID, SERVICE_URL, issued_at=time.time() - 3660)  # expired a minute ago
    assert auth.validate(bearer(just_expired), service_url=SERVICE_URL, channel_id=TEAMS).audience == APP_ID


def test_validate_async_runs_the_same_checks(auth, fake):
    good = asyncio.run(auth.validate_async(bearer(fake.token(APP_ID, SERVICE_URL)),
                                           service_url=SERVICE_URL, channel_id=TEAMS))
    assert good.audience == APP_ID
    with pytest.raises(TeamsAuthError) as caught:
        asyncio.run(auth.validate_async(bearer(fake.token("other-bot", SERVICE_URL)),
                                        service_url=SERVICE_URL, channel_id=TEAMS))
    assert caught.value.reason == "wrong_audience"


# -- every way a request is refused ----------------------------------------------------------------------------------
HOSTILE = {
    "no header": (lambda f: None, "missing_token"),
    "empty header": (lambda f: "  ", "missing_token"),
    "basic auth": (lambda f: "Basic dXNlcjpwYXNz", "not_bearer"),
    "garbage": (lambda f: "Bearer not-a-jwt", "malformed"),
    "garbage segments": (lambda f: "Bearer aaaa.bbbb.cccc", "malformed"),
    "huge header": (lambda f: "Bearer " + "a" * 20_000, "token_too_large"),
    "two tokens": (lambda f: f"Bearer {f.token(APP_ID, SERVICE_URL)} {f.token(APP_ID, SERVICE_URL)}", "malformed"),
    "forged signature": (lambda f: bearer(f.forged_token(APP_ID, SERVICE_URL)), "bad_signature"),
    "tampered claims": (lambda f: bearer(_swap_payload(f.token(APP_ID, SERVICE_URL), f.token("x", SERVICE_URL))),
                        "bad_signature"),
    "expired": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, issued_at=time.time() - 7200)), "expired"),
    "not yet valid": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, claims={"nbf": int(time.time()) + 900})),
                      "not_yet_valid"),
    "issued in the future": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, claims={"iat": int(time.time()) + 900})),
                             "not_yet_valid"),
    "no expiry": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, drop=["exp"])), "missing_claim"),
    "wrong audience": (lambda f: bearer(f.token("another-bot", SERVICE_URL)), "wrong_audience"),
    "audience list": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, claims={"aud": [APP_ID, "x"]})), "wrong_audience"),
    "no audience": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, drop=["aud"])), "missing_claim"),
    "wrong issuer": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, claims={"iss": "https://evil.example"})),
                     "wrong_issuer"),
    "an Entra issuer, multi-tenant bot": (
        lambda f: bearer(f.token(APP_ID, SERVICE_URL, claims={"iss": f"https://sts.windows.net/{TENANT}/"})),
        "wrong_issuer"),
    "alg none": (lambda f: bearer(f.none_alg_token(APP_ID, SERVICE_URL)), "alg_not_allowed"),
    "HS256 keyed with the public key": (lambda f: bearer(f.hs256_public_key_token(APP_ID, SERVICE_URL)),
                                        "alg_not_allowed"),
    "RS256 header over an HMAC": (
        lambda f: bearer(_with_header(f.hs256_public_key_token(APP_ID, SERVICE_URL), alg="RS256", kid=f.active.kid)),
        "bad_signature"),
    "no kid": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, header={"kid": None})), "no_kid"),
    "unknown kid": (lambda f: bearer(f.token(APP_ID, SERVICE_URL, kid="not-a-published-key")), "unknown_key"),
    "another service URL": (lambda f: bearer(f.token(APP_ID, "https://attacker.example/")), "wrong_service_url"),
    "no service URL claim": (lambda f: bearer(f.token(APP_ID, None)), "missing_service_url"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_request_is_refused_with_a_clear_reason(auth, fake, case):
    make, reason = HOSTILE[case]
    error = refused(auth, make(fake))
    assert (error.reason, error.status, error.code) == (reason, 401, "unauthorized")
    assert error.detail and "Bearer" not in error.detail


def test_an_activity_without_service_url_is_refused(auth, fake):
    assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL)), service_url=None).reason == "wrong_service_url"


def test_a_channel_the_key_does_not_endorse_gets_403(auth, fake):
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    for channel in ("slack", "", None):
        error = refused(auth, token, channel_id=channel)
        assert (error.reason, error.status) == ("channel_not_endorsed", 403)


def test_a_key_without_endorsements_vouches_for_any_channel(fake, clock):
    plain = fake.add_key(endorsements=None)
    auth = BotFrameworkAuthenticator(APP_ID, make_keys(fake, clock))
    assert auth.validate(bearer(fake.token(APP_ID, SERVICE_URL, key=plain)),
                         service_url=SERVICE_URL, channel_id="webchat").key_id == plain.kid


# -- single-tenant bots: the tenant's Entra issuers --------------------------------------------------------------------
def test_a_single_tenant_bot_also_accepts_its_tenants_entra_issuers(fake, clock):
    auth = BotFrameworkAuthenticator(APP_ID, make_keys(fake, clock), tenant_id=TENANT.upper())
    for issuer in (f"https://sts.windows.net/{TENANT}/", f"https://login.microsoftonline.com/{TENANT}/v2.0"):
        token = fake.token(APP_ID, None, claims={"iss": issuer, "tid": TENANT})  # Entra tokens carry no serviceurl
        claims = auth.validate(bearer(token), service_url=SERVICE_URL, channel_id=TEAMS)
        assert (claims.issuer, claims.tenant_id, claims.service_url) == (issuer, TENANT, None)

    other = "00000000-1111-2222-3333-444444444444"
    assert refused(auth, bearer(fake.token(APP_ID, None, claims={
        "iss": f"https://sts.windows.net/{other}/"}))).reason == "wrong_issuer"
    assert refused(auth, bearer(fake.token(APP_ID, None, claims={
        "iss": f"https://sts.windows.net/{TENANT}/", "tid": other}))).reason == "wrong_tenant"
    assert refused(auth, bearer(fake.token(APP_ID, "https://attacker.example/", claims={
        "iss": f"https://sts.windows.net/{TENANT}/"}))).reason == "wrong_service_url"


def test_only_a_tenant_guid_pins_entra_issuers():
    assert accepted_issuers(None) == (BOT_FRAMEWORK_ISSUER,)
    assert accepted_issuers("botframework.com") == (BOT_FRAMEWORK_ISSUER,)
    assert accepted_issuers("common") == (BOT_FRAMEWORK_ISSUER,)
    assert len(accepted_issuers(TENANT)) == 3


# -- keys: rollover, rate limit, outages ------------------------------------------------------------------------------
def test_a_rolled_over_key_is_found_by_one_refresh(auth, fake, clock):
    old = fake.active
    auth.validate(bearer(fake.token(APP_ID, SERVICE_URL)), service_url=SERVICE_URL, channel_id=TEAMS)
    new = fake.add_key()
    fake.remove_key(old.kid)
    clock.advance(61)  # past the refresh interval since the first fetch

    claims = auth.validate(bearer(fake.token(APP_ID, SERVICE_URL, key=new)), service_url=SERVICE_URL, channel_id=TEAMS)
    assert claims.key_id == new.kid
    assert fake.count(JWKS_PATH) == 2
    assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL, key=old))).reason == "unknown_key"


def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once_per_interval(auth, fake, clock):
    auth.validate(bearer(fake.token(APP_ID, SERVICE_URL)), service_url=SERVICE_URL, channel_id=TEAMS)
    for _ in range(30):
        assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL, kid=uuid.uuid4().hex))).reason == "unknown_key"
    assert fake.count(JWKS_PATH) == 1  # within the interval of the first fetch: none

    clock.advance(61)
    for _ in range(30):
        refused(auth, bearer(fake.token(APP_ID, SERVICE_URL, kid=uuid.uuid4().hex)))
    assert fake.count(JWKS_PATH) == 2  # one refresh for thirty unknown kids


def test_keys_are_refetched_after_their_ttl(auth, fake, clock):
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS)
    clock.advance(3601)
    auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS)
    assert (fake.count(METADATA_PATH), fake.count(JWKS_PATH)) == (2, 2)


def test_metadata_down_fails_closed_and_is_retried_later(auth, fake, clock):
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    fake.down = True
    assert refused(auth, token).reason == "keys_unavailable"
    assert refused(auth, token).reason == "keys_unavailable"
    assert fake.count(METADATA_PATH) == 1  # the second request waited out the backoff instead of fetching

    fake.down = False
    assert refused(auth, token).reason == "keys_unavailable"  # still within the backoff
    clock.advance(11)
    assert auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS).audience == APP_ID
    assert fake.count(METADATA_PATH) == 2


def test_stopped_service_fails_closed(fake, clock):
    auth = BotFrameworkAuthenticator(APP_ID, make_keys(fake, clock))
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    fake.stop()
    assert refused(auth, token).reason == "keys_unavailable"


def test_known_keys_outlive_an_outage_up_to_max_stale(auth, fake, clock):
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS)
    fake.down = True
    clock.advance(3601)  # past the TTL: the refresh fails, the last good keys still serve
    assert auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS).audience == APP_ID
    assert fake.count(METADATA_PATH) == 2
    clock.advance(7200)  # past max_stale: fail closed
    assert refused(auth, token).reason == "keys_unavailable"


def test_concurrent_first_requests_fetch_the_keys_once(auth, fake):
    token = bearer(fake.token(APP_ID, SERVICE_URL))
    results: list[str] = []
    barrier = threading.Barrier(12)

    def one() -> None:
        barrier.wait()
        results.append(auth.validate(token, service_url=SERVICE_URL, channel_id=TEAMS).audience)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [APP_ID] * 12
    assert (fake.count(METADATA_PATH), fake.count(JWKS_PATH)) == (1, 1)


# -- a hostile or broken key service ----------------------------------------------------------------------------------
def test_a_jwks_uri_on_another_host_is_not_followed(auth, fake):
    elsewhere = FakeBotIdentity().start()
    try:
        fake.jwks_uri = elsewhere.url + JWKS_PATH
        assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL))).reason == "keys_unavailable"
        assert elsewhere.count(JWKS_PATH) == 0
    finally:
        elsewhere.stop()


@pytest.mark.parametrize("path, body", [
    (JWKS_PATH, b'{"keys": [' + b'{"kty": "RSA", "n": "' + b"A" * 300_000 + b'"}]}'),
    (JWKS_PATH, b"<html>not json</html>"),
    (JWKS_PATH, b'{"keys": "none"}'),
    (JWKS_PATH, b'{"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}, {"kty": "oct", "k": "c2VjcmV0"}]}'),
    (METADATA_PATH, b"[]"),
    (METADATA_PATH, b'{"jwks_uri": 42}'),
    (METADATA_PATH, b"[" * 60_000),
])
def test_broken_documents_fail_closed(auth, fake, path, body):
    fake.body_override[path] = body
    assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL))).reason == "keys_unavailable"


def test_a_weak_or_malformed_key_is_left_out_and_the_others_serve(fake, clock):
    weak = fake.add_key(bits=1024)
    bad = fake.add_key(endorsements=None)
    good_key = fake.add_key()
    jwks = fake.jwks()
    for jwk in jwks["keys"]:
        if jwk["kid"] == bad.kid:
            jwk["endorsements"] = "msteams"  # not a list
    fake.body_override[JWKS_PATH] = json.dumps(jwks).encode()
    auth = BotFrameworkAuthenticator(APP_ID, make_keys(fake, clock))

    assert auth.validate(bearer(fake.token(APP_ID, SERVICE_URL, key=good_key)),
                         service_url=SERVICE_URL, channel_id=TEAMS).key_id == good_key.kid
    assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL, key=weak))).reason == "unknown_key"
    assert refused(auth, bearer(fake.token(APP_ID, SERVICE_URL, key=bad))).reason == "unknown_key"


def test_a_silent_metadata_endpoint_times_out(clock):
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        keys = SigningKeys(f"http://127.0.0.1:{port}{METADATA_PATH}", timeout_s=0.5, clock=clock)
        auth = BotFrameworkAuthenticator(APP_ID, keys)
        started = time.monotonic()
        assert refused(auth, "Bearer " + _unsigned_token(kid="k")).reason == "keys_unavailable"
        assert time.monotonic() - started < 5


# -- logs and settings ------------------------------------------------------------------------------------------------
def test_no_token_reaches_the_logs(auth, fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = [fake.token(APP_ID, SERVICE_URL), fake.forged_token(APP_ID, SERVICE_URL),
              fake.token("another-bot", SERVICE_URL), fake.hs256_public_key_token(APP_ID, SERVICE_URL),
              fake.token(APP_ID, SERVICE_URL, kid="unknown-kid")]
    auth.validate(bearer(tokens[0]), service_url=SERVICE_URL, channel_id=TEAMS)
    for token in tokens[1:]:
        refused(auth, bearer(token))
    fake.down = True
    clock.advance(3601)
    refused(auth, bearer(tokens[1]))

    text = caplog.text
    assert "Teams request refused (bad_signature)" in text and "wrong_audience" in text
    for token in tokens:
        for segment in token.split("."):
            assert segment not in text


def test_settings_out_of_bounds_are_refused(fake):
    keys = SigningKeys(fake.metadata_url)
    with pytest.raises(ValueError):
        BotFrameworkAuthenticator(APP_ID, keys, clock_skew_s=301)
    with pytest.raises(ValueError):
        BotFrameworkAuthenticator("", keys)
    with pytest.raises(ValueError):
        SigningKeys("file:///etc/passwd")
    with pytest.raises(ValueError):
        SigningKeys(fake.metadata_url, ttl_s=10, refresh_interval_s=60)


def _swap_payload(token: str, other: str) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{other.split('.')[1]}.{signature}"


def _with_header(token: str, **header) -> str:
    from tests.fakes.bot_identity import b64url

    _, payload, signature = token.split(".")
    return f"{b64url(json.dumps(header).encode())}.{payload}.{signature}"


def _unsigned_token(**header) -> str:
    from tests.fakes.bot_identity import b64url

    head = b64url(json.dumps({"alg": "RS256", **header}).encode())
    return f"{head}.{b64url(json.dumps({'aud': APP_ID}).encode())}.{b64url(b'sig')}"
