"""Real servers for tests: a throwaway PostgreSQL cluster and a Chroma server, each on 127.0.0.1.

Each yields its URL and removes everything it made. PostgreSQL needs Debian's ``postgresql``
package (initdb, pg_ctl) and the psycopg driver; a missing one skips with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes.net import free_port, wait_until_up

CHROMA = Path(sys.executable).with_name("chroma")


def _pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A PostgreSQL cluster of our own (initdb in a temp folder); yields ``postgresql+psycopg://imp@host:port``."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL variant: the psycopg driver is not installed (pip install 'psycopg[binary]')")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL variant: no initdb/pg_ctl (apt-get install -y postgresql)")
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="imp-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("PostgreSQL variant: running as root and there is no 'postgres' user to run the server")
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chown(base, user.pw_uid, user.pw_gid)
    data, port = base / "data", free_port()
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "imp", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {getattr(e, 'stderr', e)}")
    try:
        yield f"postgresql+psycopg://imp@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


def new_database(server: str) -> str:
    """A new, empty database in the cluster at ``server``; returns its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """`chroma run` (shipped in the chromadb wheel) on a free port, its data under ``folder``; yields its URL."""
    if not CHROMA.exists():  # the chromadb wheel ships it; a broken install should say so
        pytest.fail(f"chroma server binary not found at {CHROMA}")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "chroma.yaml"
    config.write_text(f"persist_path: {folder / 'data'}\nport: {port}\nlisten_address: 127.0.0.1\n"
                      "allow_reset: false\n")
    proc = subprocess.Popen([str(CHROMA), "run", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/v2/heartbeat", proc, timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
