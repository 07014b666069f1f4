"""The dashboard on real components: login and sessions over HTTP, scopes, and the page in headless chromium.

One world is built for the module: documents in two scopes (one failed ingest), questions
asked through the engine and rated, and drift checks and an alert stored as the monitor
stores them. The browser test loads the page from uvicorn on 127.0.0.1 in Debian's
chromium, driven by Selenium through the system chromedriver (Selenium Manager never runs).
"""

from __future__ import annotations

import io
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import build_engine
from bot.api import create_app
from bot.dashboard.session import COOKIE, Sessions
from bot.dashboard.svg import MAX_BARS, MAX_POINTS, Bars, Series, bar_chart, line_chart
from core.config import Settings
from core.models import Feedback
from core.store.schema import AlertRow, MonitorCheckRow
from tests.conftest import SAMPLES
from tests.fakes.net import serving

ADMIN, TEAM_A = "dash-admin-token-0123456789", "dash-team-a-token-0123456789"
GRANTS = {ADMIN: ["*"], TEAM_A: ["team-a"]}
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Read at import: the suite's autouse fixture removes IMP_* variables before each test runs.
ALLOW_MISSING_TOOLS = os.environ.get("IMP_TEST_ALLOW_MISSING_TOOLS") == "1"
EVIL_SIGNAL = "<script>alert(1)</script>"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder):
    """An engine holding: team-a's handbook, team-b's memo and a broken PDF; four answered questions
    (two in team-a, one in team-b, one in both) with ratings; six drift checks and an open alert."""
    engine = build_engine(Settings(data_dir=tmp_path_factory.mktemp("dashboard") / "data"), embedder=embedder)
    engine.ingest([SAMPLES / "handbook.md"], scope="team-a")
    engine.ingest_upload("memo.md", io.BytesIO(b"# Merger\nThe merger with Northwind closes on 3 March.\n"), "team-b")
    failed = engine.ingest_upload("broken.pdf", io.BytesIO(b"%PDF-1.4 truncated"), "team-b")
    assert failed.status.value == "failed"
    asked = {
        "a1": engine.ask("How much is the hotel allowance?", ["team-a"]),
        "a2": engine.ask("Who approves travel expenses?", ["team-a"]),
        "b1": engine.ask("When does the merger close?", ["team-b"]),
        "ab": engine.ask("What happens in March?", ["team-a", "team-b"]),
    }
    for key, rating in (("a1", 1), ("b1", -1), ("ab", 1)):
        assert engine.record_feedback(Feedback(asked[key].answer_id, f"U-{key}", "C1", rating, datetime.now(UTC)))
    now = _now()
    with engine.database.session() as s, s.begin():
        for i in range(6):
            s.add(MonitorCheckRow(checked_at=now - timedelta(hours=6 - i), window=200, seconds=0.2, signals=[
                {"name": "query_mmd", "score": 0.002 * i, "threshold": 0.008, "p_value": 0.5, "drifted": i == 5},
                {"name": "abstention_rate", "score": 0.01, "threshold": 0.1, "p_value": 0.9, "drifted": False},
                {"name": EVIL_SIGNAL, "score": 1.0, "threshold": 2.0, "p_value": None, "drifted": False},
                {"name": "malformed", "score": "NaN"},
            ]))
        s.add(AlertRow(signal="query_mmd", opened_at=now - timedelta(hours=1), score=0.01, threshold=0.008,
                       message="query_mmd drifted", delivered=[]))
    yield engine
    engine.close()


@pytest.fixture
def http(world) -> TestClient:
    """A fresh client (and cookie jar) per test; without lifespan, so the module's engine outlives it."""
    return TestClient(create_app(world, tokens=GRANTS, allowed_hosts=["testserver", "127.0.0.1"]),
                      base_url="http://testserver")


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _session(value: str) -> dict:
    return {"cookie": f"{COOKIE}={value}"}


def _tile(html: str, name: str) -> str:
    found = re.search(rf"<b>([^<]*)</b><span>{re.escape(name)}</span>", html)
    assert found, f"no {name!r} tile"
    return found.group(1)


def _login(http: TestClient, token: str, **headers: str):
    r = http.post("/dashboard/login", data={"token": token}, follow_redirects=False,
                  headers={"origin": "http://testserver", **headers})
    http.cookies.clear()  # each request below names its session itself
    return r


def test_without_a_token_the_page_is_the_login_form_and_v1_stays_closed(http):
    r = http.get("/dashboard")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert 'name="token" type="password"' in r.text and "<svg" not in r.text
    assert "script-src" not in r.headers["content-security-policy"] and "default-src 'none'" in \
        r.headers["content-security-policy"]
    assert http.get("/dashboard/login").status_code == 200
    assert http.get("/v1/documents").status_code == 401  # the dashboard opens nothing else
    assert http.get("/dashboard", headers=_bearer("not-a-token")).status_code == 401


def test_login_sets_a_signed_http_only_strict_cookie_that_opens_the_page(http):
    wrong = _login(http, "wrong-token-0123456789")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers and "not valid" in wrong.text

    r = _login(http, ADMIN)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain http here
    value = r.cookies[COOKIE]
    assert ADMIN not in value and ADMIN[:12] not in value

    page = http.get("/dashboard", headers=_session(value))
    assert page.status_code == 200 and "<svg" in page.text and 'action="/dashboard/logout"' in page.text
    assert _tile(page.text, "questions") == "4"
    assert http.get("/dashboard/login", headers=_session(value), follow_redirects=False).status_code == 303
    # The cookie is the dashboard's only: the API still wants the bearer token.
    assert http.get("/v1/documents", headers=_session(value)).status_code == 401

    out = http.post("/dashboard/logout", headers={"origin": "http://testserver", **_session(value)},
                    follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_forged_tampered_and_expired_cookies_are_refused(http):
    good = Sessions(GRANTS).issue(ADMIN)
    assert http.get("/dashboard", headers=_session(good)).status_code == 200
    version, kid, expires, nonce, sig = good.split(".")
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    forged = [
        f"{version}.{kid}.{expires}.{nonce}.{flipped}",  # signature changed
        f"{version}.{kid}.{int(expires) + 3600}.{nonce}.{sig}",  # expiry extended
        Sessions({"some-other-token-0123456789": None}).issue("some-other-token-0123456789"),  # not our key
        Sessions(GRANTS, clock=lambda: time.time() - 13 * 3600).issue(ADMIN),  # signed right, expired
        ADMIN,  # the token itself is not a cookie
        "x" * 5000,
    ]
    for value in forged:
        assert http.get("/dashboard", headers=_session(value)).status_code == 401, value[:80]


def test_a_cross_site_login_post_is_refused(http):
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"origin": "http://testserver:8443"},  # another port is another origin
                    {"sec-fetch-site": "cross-site"}, {"referer": "http://evil.example/page"}):
        r = http.post("/dashboard/login", data={"token": ADMIN}, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, headers
    same_site = http.post("/dashboard/login", data={"token": ADMIN}, follow_redirects=False,
                          headers={"referer": "http://testserver/dashboard/login", "sec-fetch-site": "same-origin"})
    assert same_site.status_code == 303
    r = http.post("/dashboard/logout", headers={"origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403


def test_the_edge_still_checks_host_and_body_size_on_dashboard_paths(http):
    assert http.get("/dashboard", headers={"host": "evil.example", **_bearer(ADMIN)}).status_code == 400
    big = http.post("/dashboard/login", content=b"token=" + b"x" * (2 << 20),
                    headers={"origin": "http://testserver", "content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413  # refused by the edge's cap before the route reads it
    long_form = http.post("/dashboard/login", content=b"token=" + b"x" * 8000, follow_redirects=False,
                          headers={"origin": "http://testserver", "content-type": "application/x-www-form-urlencoded"})
    assert long_form.status_code == 400 and "set-cookie" not in long_form.headers


def test_a_scoped_token_sees_only_its_scopes(http):
    cookie = _login(http, TEAM_A).cookies[COOKIE]
    mine = http.get("/dashboard", headers=_session(cookie)).text
    admin = http.get("/dashboard", headers=_bearer(ADMIN)).text
    assert _tile(admin, "questions") == "4" and _tile(mine, "questions") == "3"  # a1, a2 and the one in both
    assert _tile(admin, "documents") == "3" and _tile(mine, "documents") == "1"
    assert _tile(admin, "failed ingests") == "1" and _tile(mine, "failed ingests") == "0"
    assert "team-b" in admin and "team-b" not in mine and "corrupt_document" not in mine
    # Drift and alerts span every scope: an all-scopes token sees them, team A's does not.
    assert "drift: query_mmd" in admin and "query_mmd" not in mine and "open alerts" not in mine
    assert _tile(admin, "open alerts") == "1"


def test_everything_shown_is_escaped_and_the_range_is_bounded(http):
    page = http.get("/dashboard?days=99999", headers=_bearer(ADMIN))
    assert page.status_code == 200 and '<a href="/dashboard?days=365" class=on>' in page.text
    assert EVIL_SIGNAL not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "malformed" not in page.text  # a signal without a numeric score is skipped
    for bad in ("0", "-3", "abc", "1e9"):
        r = http.get(f"/dashboard?days={bad}", headers=_bearer(ADMIN))
        assert r.status_code == 200 and "<svg" in r.text
    one_day = http.get("/dashboard?days=1", headers=_bearer(ADMIN)).text
    assert "per hour" in one_day and "per day" in page.text


def test_with_no_token_configured_the_dashboard_is_open(world):
    client = TestClient(create_app(world))
    r = client.get("/dashboard")
    assert r.status_code == 200 and "<svg" in r.text and "Log out" not in r.text
    assert client.get("/dashboard/login", follow_redirects=False).headers["location"] == "/dashboard"


def test_empty_panels_say_no_data_yet(tmp_path, embedder):
    engine = build_engine(Settings(data_dir=tmp_path / "data"), embedder=embedder)
    try:
        page = TestClient(create_app(engine)).get("/dashboard").text
    finally:
        engine.close()
    assert page.count("no data yet") >= 4 and 'class="series"' not in page and 'class="bar"' not in page


def test_charts_are_bounded_and_escape_their_text():
    many = Series("<b>series</b>", [(float(i), float(i % 7)) for i in range(20_000)])
    svg = line_chart([many], title='t"itle', y_label="<y>", x_range=(0, 20_000), x_ticks=[(0, "<tick>")])
    drawn = int(re.search(r'data-points="(\d+)"', svg).group(1))
    assert drawn <= MAX_POINTS + 1 and len(svg) < 40_000 and "<circle" not in svg  # too many points for markers
    assert "<b>" not in svg and "<y>" not in svg and "<tick>" not in svg and 't"itle' not in svg
    bars = bar_chart([f"c{i}" for i in range(5000)], [Bars("n", [1.0] * 5000), Bars("nan", [float("nan")] * 3)],
                     title="bars", y_label="n")
    assert bars.count('class="bar"') == MAX_BARS


# -- in a real browser ----------------------------------------------------------------


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = (f"the dashboard's browser test needs {', '.join(missing)}: apt-get install chromium "
                   "chromium-driver, and pip install selenium==4.51.0 (IMP_TEST_ALLOW_MISSING_TOOLS=1 skips it)")
        if ALLOW_MISSING_TOOLS:
            pytest.skip(message)
        pytest.fail(message)


def _chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1300,900", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _drawn(driver) -> dict[str, int]:
    """Data drawn on the page: line points, bars, and drifted points marked."""
    from selenium.webdriver.common.by import By

    points = sum(int(p.get_attribute("data-points")) for p in driver.find_elements(By.CSS_SELECTOR, "path.series"))
    return {"charts": len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")), "points": points,
            "bars": len(driver.find_elements(By.CSS_SELECTOR, "rect.bar")),
            "alarms": len(driver.find_elements(By.CSS_SELECTOR, "circle.alarm"))}


def test_the_dashboard_draws_its_charts_in_headless_chromium(world, tmp_path, monkeypatch):
    _need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download a driver or a browser
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    app = create_app(world, tokens=GRANTS, allowed_hosts=["127.0.0.1"])
    with serving(app) as port:
        driver = _chromium(tmp_path / "profile")
        try:
            base = f"http://127.0.0.1:{port}"
            driver.get(f"{base}/dashboard")
            field = WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.ID, "token")))
            assert not driver.find_elements(By.CSS_SELECTOR, "svg.chart")
            field.send_keys(ADMIN)
            driver.find_element(By.CSS_SELECTOR, "form.login button").click()
            WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
            assert driver.current_url == f"{base}/dashboard"
            session = {c["name"]: c for c in driver.get_cookies()}[COOKIE]
            assert session["httpOnly"] and session["sameSite"] == "Strict" and ADMIN not in session["value"]

            drawn = _drawn(driver)
            assert drawn["charts"] >= 7 and drawn["bars"] >= 5 and drawn["points"] >= 12, drawn
            assert drawn["alarms"] >= 1, drawn  # the drifted check is marked
            drift = driver.find_element(By.CSS_SELECTOR, ".small-multiples")
            assert len(drift.find_elements(By.CSS_SELECTOR, "svg.chart")) == 3
            assert EVIL_SIGNAL in drift.text  # shown as text, not run

            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1300, min(height + 40, 6000))
            shot = tmp_path / "dashboard.png"
            assert driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

            driver.find_element(By.CSS_SELECTOR, 'form[action="/dashboard/logout"] button').click()
            WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.ID, "token")))
            driver.get(f"{base}/dashboard")
            WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.ID, "token")))
            assert not driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        finally:
            driver.quit()


# -- the model registry (MLflow) ----------------------------------------------------------------


def test_the_registry_versions_and_their_gate_metrics_appear_for_all_scope_viewers(tmp_path, embedder):
    from app import build_model_registry, build_registry_reader
    from training.registry import CHAMPION, EMBEDDER

    settings = Settings(data_dir=tmp_path / "data")
    registry = build_model_registry(settings)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.txt").write_text("pretend weights\n")
    with registry.run("embedder-train", params={"epochs": 1}) as run:
        run.metrics({"champion_hit@5": 0.5, "candidate_hit@5": 0.625, "champion_mrr@10": 0.25,
                     "candidate_mrr@10": 0.375, "loss": 0.1})
        version = registry.register(EMBEDDER, run, model, tags={"gate": "passed"})
    registry.set_alias(EMBEDDER, CHAMPION, version)

    engine = build_engine(settings, embedder=embedder)
    app = create_app(engine, tokens=GRANTS, allowed_hosts=["testserver"],
                     model_registry=build_registry_reader(settings))
    with TestClient(app, base_url="http://testserver") as client:  # the lifespan starts the registry reader
        deadline = time.monotonic() + 60
        while True:
            page = client.get("/dashboard", headers={"Authorization": f"Bearer {ADMIN}"}).text
            if "being read" not in page or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "Model registry (MLflow)" in page
        row = re.search(r"<tr><td>imp-embedder</td><td>" + version + r"</td>.*?</tr>", page)
        assert row, page[page.find("Model registry"):][:2000]
        assert "champion" in row.group(0) and "passed" in row.group(0)
        assert "0.500 → 0.625" in row.group(0) and "0.250 → 0.375" in row.group(0)
        scoped = client.get("/dashboard", headers={"Authorization": f"Bearer {TEAM_A}"}).text
        assert "shown to tokens that open every scope" in scoped and "0.500 → 0.625" not in scoped
