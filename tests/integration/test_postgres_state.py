"""IMP's state on servers: the schema's migrations (Alembic) on PostgreSQL and SQLite, a plain
postgresql:// IMP_DB__URL, and API replicas that share one PostgreSQL database, one Chroma
server and one data volume without doing a job twice or losing one.

PostgreSQL is a throwaway cluster of our own (Debian's postgresql package); Chroma is
`chroma run` from the chromadb wheel; the replicas are real `imp serve` processes.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from app import build_engine
from core.config import DbSettings, Settings
from core.models import IngestStatus
from core.store import migrate
from core.store.database import Database, make_sql_engine
from core.store.schema import Base
from tests.fakes.net import free_port, wait_until_up
from tests.support.servers import chroma_server, new_database

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
IMP = Path(sys.executable).with_name("imp")
TOKEN = "replica-test-token-4f1c9a"


def _differences(url: str) -> list:
    engine = make_sql_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


# -- migrations ---------------------------------------------------------------------


def test_the_migrations_build_the_schema_the_models_describe(db_url):
    # A new database is created from the models and stamped; the migrations must give the same schema.
    engine = make_sql_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(migrate.SCRIPTS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    engine.dispose()

    assert _differences(db_url) == []
    assert migrate.current(make_sql_engine(db_url)) == migrate.head()


def test_a_new_database_is_created_at_the_newest_revision(db_url):
    Database(db_url).session().close()

    assert _differences(db_url) == []
    assert migrate.current(make_sql_engine(db_url)) == migrate.head()


def test_a_database_from_before_alembic_is_adopted_and_keeps_its_rows(db_url):
    # What an IMP of November 2026 made: its tables without alembic_version, jobs without owners, answers
    # without the best similarity; and a document it had indexed.
    engine = make_sql_engine(db_url)
    old = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        drop = {"jobs": {"owner", "owner_until"}, "answers": {"best_similarity"}}.get(table.name, set())
        sa.Table(table.name, old, *[c.copy() for c in table.columns if c.name not in drop])
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO documents (doc_id, source, scope, status, chunks, segments, size_bytes, "
                             "updated_at) VALUES ('d1', 'handbook.md', 'hr', 'indexed', 3, 0, 10, :t)"),
                     {"t": "2026-11-01 10:00:00"})
    engine.dispose()

    database = Database(db_url)
    with database.session() as s:
        assert s.execute(sa.text("SELECT source, chunks FROM documents")).all() == [("handbook.md", 3)]
        assert s.execute(sa.text("SELECT owner, owner_until FROM jobs")).all() == []
    database.close()
    assert migrate.current(make_sql_engine(db_url)) == migrate.head()
    assert _differences(db_url) == []


def _open(url: str, ready) -> None:  # noqa: ANN001 - a multiprocessing Event
    ready.wait(30)
    Database(url).session().close()


def test_processes_starting_at_once_on_a_new_database_migrate_it_once(db_url):
    ctx = multiprocessing.get_context("forkserver")
    ready = ctx.Event()
    procs = [ctx.Process(target=_open, args=(db_url, ready)) for _ in range(4)]
    for p in procs:
        p.start()
    ready.set()
    for p in procs:
        p.join(120)

    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    engine = make_sql_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [migrate.head()]
    assert _differences(db_url) == []


# -- IMP_DB__URL ---------------------------------------------------------------------


def test_a_plain_postgresql_url_keeps_the_engines_state_on_the_server(postgres, tmp_path, embedder):
    plain = new_database(postgres).replace("postgresql+psycopg://", "postgresql://")
    settings = Settings(data_dir=tmp_path / "data", db=DbSettings(url=plain))
    engine = build_engine(settings, embedder=embedder)
    try:
        [result] = engine.ingest([SAMPLES / "handbook.md"], scope="hr")
        answer = engine.ask("how much is the hotel allowance in Europe?", scopes=["hr"])
    finally:
        engine.close()

    assert result.status == IngestStatus.INDEXED
    assert answer.citations and answer.citations[0].chunk.source.endswith("handbook.md")
    assert not (settings.data_dir / "imp.sqlite3").exists()
    import psycopg

    with psycopg.connect(plain) as conn:
        assert conn.execute("SELECT scope, status FROM documents").fetchall() == [("hr", "indexed")]
        assert conn.execute("SELECT count(*) FROM answers").fetchone() == (1,)


@pytest.mark.parametrize("url, says", [
    ("mysql://imp:s3cret-pw@db/imp", "postgresql:// or sqlite://"),
    ("imp:s3cret-pw@db/imp", "such as postgresql://"),
])
def test_a_database_url_imp_cannot_use_is_refused_without_echoing_it(url, says):
    with pytest.raises(ValueError) as refused:
        DbSettings(url=url)
    assert says in str(refused.value) and "s3cret" not in str(refused.value)


# -- imp db (cli_db.py) --------------------------------------------------------------


def _imp_db(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    env.update({"IMP_DATA_DIR": str(data_dir), "IMP_DB__URL": url, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"})
    return subprocess.run([str(IMP), "db", *args], env=env, capture_output=True, text=True, timeout=120)


def test_imp_db_current_and_upgrade_as_an_operator_runs_them(db_url, tmp_path):
    newest = migrate.head()
    before = _imp_db(tmp_path, db_url, "current")
    assert before.returncode == 1 and f"revision none (newest {newest})" in before.stdout

    first, again = _imp_db(tmp_path, db_url, "upgrade"), _imp_db(tmp_path, db_url, "upgrade")
    assert first.returncode == 0 and first.stdout.strip().endswith(f"created at {newest}")
    assert again.returncode == 0 and again.stdout.strip().endswith("up to date")

    after = _imp_db(tmp_path, db_url, "current")
    assert after.returncode == 0 and f"revision {newest} (newest {newest})" in after.stdout


def test_imp_db_says_in_one_line_why_the_database_cannot_be_reached(tmp_path):
    url = f"postgresql://imp:s3cret-pw@127.0.0.1:{free_port()}/imp"  # nothing listens there
    for command_, says in (("upgrade", "could not upgrade the database"), ("current", "could not read the database")):
        proc = _imp_db(tmp_path, url, command_)
        assert proc.returncode == 1 and says in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "s3cret" not in proc.stdout + proc.stderr


# -- two API replicas ----------------------------------------------------------------


def _replicas(env: dict[str, str], folder: Path) -> list[tuple[subprocess.Popen, str]]:
    """Two `imp serve` processes on the same settings, started together; each is up when this returns."""
    started = []
    for name in ("a", "b"):
        port = free_port()
        proc = subprocess.Popen([str(IMP), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=(folder / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)
        started.append((proc, f"http://127.0.0.1:{port}"))
    for proc, url in started:
        wait_until_up(f"{url}/healthz", proc, timeout=180)
    return started


def _job(client: httpx.Client, url: str, job_id: str) -> dict:
    r = client.get(f"{url}/v1/jobs/{job_id}")
    r.raise_for_status()
    return r.json()


def _owner(db: str, job_id: str) -> str | None:
    engine = make_sql_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT owner FROM jobs WHERE job_id = :j"), {"j": job_id}).scalar_one()
    finally:
        engine.dispose()


def _until(what: str, check, timeout: float) -> object:  # noqa: ANN001 - a callable returning a truthy value
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_two_replicas_share_state_and_a_stopped_replicas_job_is_taken_over_once(postgres, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (make system-deps)")
    db = new_database(postgres)
    # A recording long enough to be cut off on a fast machine too: the stand-up ten times over (8 min 10 s).
    recording = tmp_path / "standup-x10.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", "9", "-i", str(SAMPLES / "rotterdam-pilot-standup.m4a"),
                    "-c", "copy", str(recording)], check=True, timeout=60)
    with chroma_server(tmp_path / "chroma") as chroma:
        env = {**os.environ, "IMP_DATA_DIR": str(tmp_path / "shared"), "IMP_DB__URL": db,
               "IMP_CHROMA__URL": chroma, "IMP_API__TOKEN": TOKEN, "IMP_DB__JOB_LEASE_S": "2",
               "IMP_SPEECH__WORKERS": "1", "IMP_SPEECH__DIARIZE": "false", "HF_HUB_OFFLINE": "1"}
        (a, url_a), (b, url_b) = _replicas(env, tmp_path)
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
                # What one replica indexes, the other finds: vectors on the Chroma server, the keyword index
                # rebuilt by each replica from the shared registry.
                with open(SAMPLES / "handbook.md", "rb") as f:
                    r = client.post(f"{url_a}/v1/documents", files={"files": ("handbook.md", f)},
                                    data={"scope": "hr"})
                assert r.status_code == 200 and r.json()["documents"][0]["status"] == "indexed"
                hits = client.post(f"{url_b}/v1/search", json={"query": "hotel allowance", "scopes": ["hr"]}).json()
                assert hits["hits"][0]["source"].endswith("handbook.md")

                # A recording accepted by A runs on A; B, polling the same database, leaves it alone.
                with open(recording, "rb") as f:
                    r = client.post(f"{url_a}/v1/documents?background=true",
                                    files={"files": (recording.name, f)}, data={"scope": "ops"})
                assert r.status_code == 202
                job_id = r.json()["jobs"][0]["job_id"]
                _until("A to start transcribing",
                       lambda: "transcrib" in _job(client, url_b, job_id)["stage"], timeout=120)
                for _ in range(4):  # two lease periods and more: A renews, B never takes it
                    assert _owner(db, job_id).split(":")[1] == str(a.pid)
                    assert _job(client, url_b, job_id)["status"] == "running"
                    time.sleep(1.5)

                a.send_signal(signal.SIGKILL)  # the replica is gone mid-job
                a.wait(30)
                done = _until("B to finish the job", lambda: (j := _job(client, url_b, job_id))["status"]
                              in ("done", "failed") and j, timeout=300)
                assert done["status"] == "done", done["error"]
                assert _owner(db, job_id).split(":")[1] == str(b.pid)
                docs = client.get(f"{url_b}/v1/documents", params={"scope": "ops"}).json()["documents"]
                assert [(d["source"], d["status"]) for d in docs] == [(f"upload:{recording.name}", "indexed")]
                assert docs[0]["chunks"] == done["result"]["chunks"] > 0
                hits = client.post(f"{url_b}/v1/search",
                                   json={"query": "charging stations", "scopes": ["ops"], "k": 50}).json()
                pieces = [(h["start"], h["end"], h["text"]) for h in hits["hits"]]
                assert pieces and len(pieces) == len(set(pieces)) <= docs[0]["chunks"]  # no chunk twice
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)


def test_jobs_submitted_to_two_replicas_at_once_each_run_once(postgres, tmp_path):
    db = new_database(postgres)
    env = {**os.environ, "IMP_DATA_DIR": str(tmp_path / "shared"), "IMP_DB__URL": db,
           "IMP_API__TOKEN": TOKEN, "IMP_DB__JOB_LEASE_S": "3", "HF_HUB_OFFLINE": "1"}
    (a, url_a), (b, url_b) = _replicas(env, tmp_path)
    names = ["handbook.md", "price-list.csv", "q3-planning.eml", "security-policy.html"]
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            jobs = []
            for i, name in enumerate(names):
                with open(SAMPLES / name, "rb") as f:
                    r = client.post(f"{(url_a, url_b)[i % 2]}/v1/documents?background=true",
                                    files={"files": (name, f)}, data={"scope": "all-hands"})
                jobs.append(r.json()["jobs"][0]["job_id"])
            finished = [_until(f"job {j}", lambda j=j: (x := _job(client, url_a, j))["status"] in ("done", "failed")
                               and x, timeout=180) for j in jobs]
            time.sleep(4)  # more than a lease: nothing is taken over once done
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(30)

    assert [f["status"] for f in finished] == ["done"] * 4
    assert [_owner(db, j).split(":")[1] for j in jobs] == [str(p.pid) for p in (a, b, a, b)]
    engine = make_sql_engine(db)
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT source, attempts FROM documents ORDER BY source")).all()
    assert attempts == sorted((f"upload:{n}", 1) for n in names)  # every document ingested exactly once


# -- job claims (core/jobs.py) on either database --------------------------------------


def test_a_runner_takes_over_only_lapsed_claims_and_only_once(db_url):
    from datetime import UTC, datetime, timedelta

    from core.jobs import JobRunner, Outcome
    from core.store.jobs import JobStore

    ran: list[str] = []
    store = JobStore(Database(db_url))
    now = datetime.now(UTC).replace(tzinfo=None)
    live = store.create("echo", "C1", "live", owner="other-host:41:aa", owner_until=now + timedelta(minutes=5))
    lapsed = store.create("echo", "C1", "lapsed", owner="other-host:42:bb", owner_until=now - timedelta(seconds=1))
    legacy = store.create("echo", "C1", "legacy")  # from before claims: no owner
    runners = [JobRunner(JobStore(Database(db_url)), {"echo": lambda job, report: (ran.append(job.source),
                                                                                   Outcome({}))[1]}, lease_s=30)
               for _ in range(2)]
    try:
        taken = [r.resume() for r in runners]
        _until("the taken jobs to finish", lambda: sorted(ran) == ["lapsed", "legacy"], timeout=30)
    finally:
        for r in runners:
            r.close()

    assert sorted(taken) == [0, 2]  # one runner took both, the other found nothing left
    assert store.get(live.job_id).status.value == "queued" and store.get(live.job_id).owner == "other-host:41:aa"
    assert {store.get(j.job_id).status.value for j in (lapsed, legacy)} == {"done"}
