"""Training in a process of its own: `imp train ... --background` returns a job id at once.

The job is a small JSON file beside its log under the data folder; the child process
(the same command, run in a new session so it outlives the shell) writes its outcome
there when it ends, and `imp train status` reads it, telling a crashed run from a running one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from core.errors import InvalidRequest, NotFound

_ID = re.compile(r"[0-9a-f]{12}")


def start(folder: Path, args: list[str]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    job_id = uuid.uuid4().hex[:12]
    path, log = folder / f"{job_id}.json", folder / f"{job_id}.log"
    command = [sys.executable, "-c", "from cli import cli; cli()", *args, "--job-file", str(path)]
    with open(log, "ab") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=os.getcwd())
    job = {"job_id": job_id, "status": "running", "pid": child.pid, "started": time.time(), "log": str(log),
           "args": args}
    _write(path, job)
    return job


def finish(path: Path, outcome: dict) -> None:
    job = json.loads(path.read_text()) if path.is_file() else {}
    _write(path, job | {"status": "done", "finished": time.time(), "outcome": outcome})


def status(folder: Path, job_id: str) -> dict:
    if not _ID.fullmatch(job_id or ""):
        raise InvalidRequest("a job id is 12 hexadecimal characters")
    path = folder / f"{job_id}.json"
    if not path.is_file():
        raise NotFound(f"no training job {job_id}")
    job = json.loads(path.read_text())
    if job.get("status") == "running" and not _alive(int(job.get("pid", 0))):
        job["status"] = "failed"
    if job["status"] != "done":
        log = Path(job.get("log", ""))
        job["log_tail"] = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    return job


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it ended
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"))


def _write(path: Path, job: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job, default=str))
    tmp.replace(path)
