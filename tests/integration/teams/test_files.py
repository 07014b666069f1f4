"""Files dropped in Teams (bot.teams.files) fetched over real HTTP from a fake SharePoint and a fake Bot
Connector attachment store, then indexed by the real engine in the conversation's scope only.

Every refusal is checked for what a user or an operator would notice: the reason, that nothing was
left in the staging folder, that no request went where it must not (a disallowed host, a token to
SharePoint), and that no pre-authenticated link's query string reached the logs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from microsoft_agents.activity import Attachment

from bot.teams.files import (
    FILE_DOWNLOAD_INFO,
    FileDownloadFailed,
    FileDownloadTimeout,
    FileGone,
    FileHostRefused,
    FileLinkExpired,
    FileTooLarge,
    TeamsFiles,
    UnsafeFileName,
    UnusableAttachment,
    file_of,
    files_in,
    ingest_file,
    submit_staged,
)
from bot.teams.token import BotTokenProvider
from core.errors import DocumentTooLarge, NotFound
from core.models import JobStatus
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.sharepoint import FakeFileHost

CHANNEL = "19:general0123@thread.tacv2"
OTHER = "19:finance0456@thread.tacv2"
CAP = 64 * 1024
NOTE = (b"# Pilot rollout\n\nThe Zanzibar pilot starts on 14 May in the Lisbon office. "
        b"Marta Quist owns the rollout checklist and the training sessions.\n")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def drop(url: str, name: str = "rollout.md", unique_id: str = "A1B2C3D4-0000-4000-8000-00000000F1LE") -> dict:
    """A file attachment as Teams puts it on a message activity."""
    return {"contentType": FILE_DOWNLOAD_INFO, "name": name,
            "content": {"downloadUrl": url, "uniqueId": unique_id, "fileType": Path(name).suffix.lstrip(".")}}


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def connector():
    with FakeBotConnector() as fake:
        yield fake


@pytest.fixture
def tokens(connector):
    provider = BotTokenProvider(connector.app_id, connector.app_secret, token_url=connector.token_url)
    yield provider
    provider.close()


@pytest.fixture
def sharepoint():
    with FakeFileHost() as host:
        yield host


@pytest.fixture
def images(connector):
    """The Bot Connector's attachment store: images only for a token the fake connector issued."""
    with FakeFileHost(authorize=connector.token_ok) as host:
        yield host


@pytest.fixture
def staging(tmp_path) -> Path:
    return tmp_path / "teams-staging"


@pytest.fixture
def files(staging, sharepoint, images, tokens):
    return TeamsFiles(staging, CAP, tokens=tokens, file_hosts=(sharepoint.host_entry,),
                      token_hosts=(images.host_entry,), read_timeout_s=0.5, total_timeout_s=2.0)


def wait_for(engine, job_id: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = engine.job(job_id)
        if job.status in (JobStatus.DONE, JobStatus.FAILED):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


# ----- a good file lands, in its scope only ------------------------------------------------
def test_a_dropped_file_is_indexed_in_its_conversation_and_nowhere_else(engine, files, sharepoint, staging):
    url = sharepoint.add_file("rollout.md", NOTE, content_type="text/markdown")
    job = ingest_file(files, engine, file_of(drop(url)), CHANNEL)
    done = wait_for(engine, job.job_id)
    assert done.status == JobStatus.DONE and done.result["status"] == "indexed", done.error
    assert done.scope == CHANNEL and done.source == "teams:A1B2C3D4-0000-4000-8000-00000000F1LE/rollout.md"

    hits = engine.search("Who owns the Zanzibar pilot rollout checklist?", scopes=[CHANNEL])
    assert hits and "Marta Quist" in hits[0].chunk.text
    assert engine.search("Who owns the Zanzibar pilot rollout checklist?", scopes=[OTHER]) == []
    assert leftovers(staging) == []  # the engine keeps its own copy; ours is gone
    [request] = sharepoint.seen(url)
    assert "authorization" not in request.headers  # a pre-authenticated link gets a plain GET


def test_fetch_takes_an_attachment_model_and_stages_the_exact_bytes(files, sharepoint, staging):
    url = sharepoint.add_file("budget notes.txt", NOTE, content_type="text/plain")
    attachment = Attachment.model_validate(drop(url, "budget notes.txt"))
    with files.fetch(attachment) as staged:
        assert staged.path.read_bytes() == NOTE and staged.size == len(NOTE)
        assert staged.name == "budget notes.txt" and staged.path.parent.parent == staging
        assert staged.content_type == "text/plain"
    assert leftovers(staging) == []


def test_files_in_skips_cards_and_the_message_html(sharepoint):
    url = sharepoint.add_file("rollout.md", NOTE)
    attachments = [{"contentType": "text/html", "content": "<div>see the file</div>"},
                   {"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard"}},
                   drop(url)]
    [found] = files_in(attachments)
    assert found.name == "rollout.md" and found.host == "127.0.0.1" and not found.needs_token
    assert "tempauth" not in repr(found)  # the link is a credential: kept out of reprs and logs
    assert file_of({"contentType": "text/html", "content": "<p>hi</p>"}) is None


def test_a_file_the_engine_refuses_is_a_failed_job_and_nothing_stays(engine, files, sharepoint, staging):
    url = sharepoint.add_file("empty.md", b"\n\n")
    job = submit_staged(engine, files.fetch(drop(url, "empty.md")), CHANNEL)
    done = wait_for(engine, job.job_id)
    assert done.status == JobStatus.FAILED and done.result["status"] == "failed"
    assert leftovers(staging) == []


# ----- size cap -------------------------------------------------------------------------------
def test_a_declared_size_over_the_cap_is_refused_before_the_body_is_read(files, sharepoint, staging):
    url = sharepoint.add_file("huge.pdf", b"%PDF-1.7\n" + b"0" * (CAP * 4))
    with pytest.raises(FileTooLarge) as refused:
        files.fetch(drop(url, "huge.pdf"))
    assert isinstance(refused.value, DocumentTooLarge) and "64 KB" in refused.value.detail
    assert leftovers(staging) == []


def test_an_undeclared_size_is_counted_while_it_streams(files, sharepoint, staging):
    url = sharepoint.add_file("stream.txt", b"x" * (CAP * 16), chunked=True)
    with pytest.raises(FileTooLarge, match="larger than the 64 KB"):
        files.fetch(drop(url, "stream.txt"))
    assert leftovers(staging) == []


def test_bytes_past_the_content_length_are_never_taken(files, sharepoint):
    url = sharepoint.add_file("short.txt", NOTE, extra=b"x" * (CAP * 4))
    with files.fetch(drop(url, "short.txt")) as staged:
        assert staged.path.read_bytes() == NOTE


def test_a_host_that_sends_less_than_it_declared_gives_an_incomplete_download(files, sharepoint, staging):
    url = sharepoint.add_file("cut.txt", NOTE, declare=len(NOTE) + 500)
    with pytest.raises(FileDownloadFailed, match="broke off before the whole file arrived"):
        files.fetch(drop(url, "cut.txt"))
    assert leftovers(staging) == []


# ----- where IMP may go -----------------------------------------------------------------------
def test_a_redirect_within_the_allow_list_is_followed(files, sharepoint):
    target = sharepoint.add_file("moved.md", NOTE)
    with files.fetch(drop(sharepoint.redirect(target), "moved.md")) as staged:
        assert staged.path.read_bytes() == NOTE


def test_a_redirect_to_a_disallowed_host_is_refused_without_calling_it(files, sharepoint, staging):
    with FakeFileHost() as elsewhere:
        target = elsewhere.add_file("rollout.md", NOTE)
        with pytest.raises(FileHostRefused, match="127.0.0.1 is not a host"):
            files.fetch(drop(sharepoint.redirect(target)))
        assert elsewhere.requests == []
    assert leftovers(staging) == []


def test_redirect_loops_stop_after_the_limit(files, sharepoint, staging):
    url = sharepoint.add_file("rollout.md", NOTE)
    for _ in range(4):
        url = sharepoint.redirect(url)
    with pytest.raises(FileDownloadFailed, match="too many times"):
        files.fetch(drop(url))
    assert len(sharepoint.requests) == 4  # the first link and three redirects, no more
    assert leftovers(staging) == []


@pytest.mark.parametrize("url, why", [
    ("http://contoso-my.sharepoint.com/personal/ann/download.aspx?tempauth=abc", "is not https"),
    ("https://contoso.example.net/download.aspx?tempauth=abc", "contoso.example.net is not a host"),
    ("https://user:pw@contoso.sharepoint.com/x?tempauth=abc", "carries credentials"),
    ("http://127.0.0.2:9/x", "is not a host"),
    ("file:///etc/passwd", "no host"),
])
def test_links_off_the_allow_list_are_refused_before_any_request(staging, url, why):
    fetcher = TeamsFiles(staging, CAP)  # the production allow-list: .sharepoint.com, https only
    with pytest.raises(FileHostRefused, match=why):
        fetcher.fetch(drop(url))
    assert leftovers(staging) == []


def test_plain_http_is_refused_to_a_loopback_host_listed_without_its_port(staging, sharepoint):
    url = sharepoint.add_file("rollout.md", NOTE)
    fetcher = TeamsFiles(staging, CAP, file_hosts=("127.0.0.1",))
    with pytest.raises(FileHostRefused, match="plain http"):
        fetcher.fetch(drop(url))
    assert sharepoint.requests == []


def self_signed(folder: Path) -> Path:
    """A certificate for 127.0.0.1 and its key in one PEM file, made for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contoso.sharepoint.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = folder / "host.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pem


def test_https_hosts_are_verified_against_trusted_certificates(tmp_path, staging):
    pem = self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem)
    with FakeFileHost(tls=server) as host:
        url = host.add_file("rollout.md", NOTE)
        assert url.startswith("https://127.0.0.1:")
        trusting = TeamsFiles(staging, CAP, file_hosts=(host.host_entry,), tls=ssl.create_default_context(cafile=pem))
        with trusting.fetch(drop(url)) as staged:
            assert staged.path.read_bytes() == NOTE
        default = TeamsFiles(staging, CAP, file_hosts=(host.host_entry,))  # the system's CAs only
        with pytest.raises(FileDownloadFailed, match="SSLCertVerificationError"):
            default.fetch(drop(url))
    assert leftovers(staging) == []


# ----- the host misbehaves --------------------------------------------------------------------
def test_a_server_that_does_not_answer_times_out(files, sharepoint, staging):
    url = sharepoint.add_file("slow.md", NOTE, delay_s=2.0)
    started = time.monotonic()
    with pytest.raises(FileDownloadTimeout, match="did not answer in time"):
        files.fetch(drop(url, "slow.md"))
    assert time.monotonic() - started < 1.8
    assert leftovers(staging) == []


def test_a_server_that_drips_the_file_hits_the_total_deadline(files, sharepoint, staging):
    url = sharepoint.add_file("drip.md", NOTE, drip_s=0.05)  # ~8 s for the whole file; the limit is 2 s
    with pytest.raises(FileDownloadTimeout, match="too slowly"):
        files.fetch(drop(url, "drip.md"))
    assert leftovers(staging) == []


@pytest.mark.parametrize("status, error, why", [
    (404, FileGone, "no longer on 127.0.0.1"),
    (403, FileLinkExpired, "send the file again"),
    (500, FileDownloadFailed, "answered HTTP 500"),
])
def test_host_errors_become_typed_reasons(files, sharepoint, staging, status, error, why):
    url = sharepoint.add_file("gone.md", NOTE, status=status)
    with pytest.raises(error, match=why) as refused:
        files.fetch(drop(url, "gone.md"))
    assert status != 404 or isinstance(refused.value, NotFound)
    assert leftovers(staging) == []


def test_an_expired_link_is_reported_as_expired(files, sharepoint, staging):
    url = sharepoint.add_file("rollout.md", NOTE)
    stale = url.replace("tempauth=", "tempauth=old")
    with pytest.raises(FileLinkExpired):
        files.fetch(drop(stale))
    assert leftovers(staging) == []


# ----- names and attachments -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/cron.d/imp", "a\\b.md", "notes\x00.md", "..", "x" * 300])
def test_unsafe_file_names_are_refused_before_any_request(files, sharepoint, staging, name):
    url = sharepoint.add_file("rollout.md", NOTE)
    with pytest.raises(UnsafeFileName):
        files.fetch(drop(url, name))
    assert sharepoint.requests == [] and leftovers(staging) == []


def test_a_file_attachment_without_a_link_is_unusable(files):
    with pytest.raises(UnusableAttachment, match="without a download link"):
        files.fetch({"contentType": FILE_DOWNLOAD_INFO, "name": "a.md", "content": {"uniqueId": "x"}})
    with pytest.raises(UnusableAttachment, match="not a file"):
        files.fetch({"contentType": "application/vnd.microsoft.card.hero", "content": {}})


# ----- inline images: the bot token, to the connector only ----------------------------------
def test_an_inline_image_is_fetched_with_the_bot_token_and_sharepoint_never_sees_it(
        files, connector, images, sharepoint, staging):
    image_url = images.add_image("0-eus-d1-4f2c", PNG)
    file_url = sharepoint.add_file("rollout.md", NOTE)
    with files.fetch({"contentType": "image/png", "contentUrl": image_url}) as image:
        assert image.path.read_bytes() == PNG
        assert image.name == "image-0-eus-d1-4f2c.png" and image.source == f"teams:0-eus-d1-4f2c/{image.name}"
    files.fetch(drop(file_url)).discard()
    [sent] = images.seen(image_url)
    assert sent.headers["authorization"] == f"Bearer {connector.issued[0]}"
    assert all("authorization" not in r.headers for r in sharepoint.requests)
    assert leftovers(staging) == []


def test_an_image_claiming_to_live_on_sharepoint_gets_no_token(files, connector, sharepoint, staging):
    url = sharepoint.add_file("cat.png", PNG)
    with pytest.raises(FileHostRefused):
        files.fetch({"contentType": "image/png", "contentUrl": url})
    assert sharepoint.requests == [] and connector.issued == []


def test_a_connector_redirect_off_its_hosts_is_refused_and_carries_no_token(files, images, sharepoint):
    target = sharepoint.add_file("cat.png", PNG)
    bounce = images.redirect(target)
    with pytest.raises(FileHostRefused):
        files.fetch({"contentType": "image/png", "contentUrl": bounce})
    assert sharepoint.requests == []


def test_a_revoked_token_is_replaced_once(files, connector, images):
    url = images.add_image("0-eus-d1-9a9a", PNG)
    files.fetch({"contentType": "image/png", "contentUrl": url}).discard()
    connector.revoke_tokens()
    with files.fetch({"contentType": "image/png", "contentUrl": url}) as image:
        assert image.path.read_bytes() == PNG
    assert len(connector.issued) == 2
    assert [r.headers["authorization"] for r in images.seen(url)] == [
        f"Bearer {connector.issued[0]}", f"Bearer {connector.issued[0]}", f"Bearer {connector.issued[1]}"]


def test_an_image_without_a_token_source_is_refused(staging, images):
    url = images.add_image("0-eus-d1-1111", PNG)
    fetcher = TeamsFiles(staging, CAP, token_hosts=(images.host_entry,))
    with pytest.raises(FileHostRefused, match="no bot token"):
        fetcher.fetch({"contentType": "image/png", "contentUrl": url})
    assert images.requests == []


# ----- credentials stay out of the logs ------------------------------------------------------
def test_no_link_query_or_token_reaches_the_logs(files, connector, sharepoint, images, caplog):
    caplog.set_level(logging.DEBUG)
    good = sharepoint.add_file("rollout.md", NOTE)
    missing = sharepoint.add_file("gone.md", NOTE, status=404)
    moved = sharepoint.redirect(sharepoint.add_file("moved.md", NOTE))
    image = images.add_image("0-eus-d1-7777", PNG)
    files.fetch(drop(good)).discard()
    files.fetch(drop(moved, "moved.md")).discard()
    files.fetch({"contentType": "image/png", "contentUrl": image}).discard()
    with pytest.raises(FileGone) as refused:
        files.fetch(drop(missing, "gone.md"))
    secrets_seen = [r.query["tempauth"] for r in sharepoint.requests] + connector.issued
    assert len(secrets_seen) >= 5
    logged = caplog.text + refused.value.detail
    assert "fetched rollout.md" in caplog.text and sharepoint.host_entry.split(":")[0] in caplog.text
    assert not [s for s in secrets_seen if s in logged]
    assert "tempauth" not in logged and "UniqueId" not in logged
