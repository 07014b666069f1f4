#!/usr/bin/env python3
"""Container health check for every IMP process (installed in the image as /usr/local/bin/imp-healthcheck).

    imp-healthcheck http://127.0.0.1:8000/healthz   the API (and the MLflow server: /health): healthy on a 2xx
    imp-healthcheck --db                            imp worker / imp slack: healthy when the relational store
                                                    (IMP_DB__URL, else the SQLite file in IMP_DATA_DIR) answers

Exit 0 means healthy and 1 unhealthy, as Docker's HEALTHCHECK and Compose expect; the reason goes to
stdout, which `docker inspect` shows in the health log. Only the standard library is needed for
the HTTP check, so it also works from an image without curl.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def _host_header() -> str | None:
    """The first name in IMP_API__ALLOWED_HOSTS: the API answers 400 to any other Host header."""
    raw = os.environ.get("IMP_API__ALLOWED_HOSTS", "").strip()
    if not raw:
        return None
    try:
        names = json.loads(raw) if raw.startswith("[") else raw.split(",")
    except ValueError:
        return None  # the service itself refuses to start on this value and says why
    for name in names:
        name = str(name).strip()
        if name and name != "*":
            return name
    return None


def check_http(url: str) -> tuple[bool, str]:
    if not url.startswith(("http://", "https://")):
        return False, f"not an http(s) URL: {url!r}"
    request = urllib.request.Request(url, headers={"User-Agent": "imp-healthcheck"})
    host = _host_header()
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - scheme checked above
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as e:
        return False, f"{url}: HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return False, f"{url}: {reason}"


def check_db() -> tuple[bool, str]:
    # Imported here: the HTTP check must not need IMP's packages (the image's HEALTHCHECK runs it often).
    from sqlalchemy import create_engine, text

    from core.config import Settings

    try:
        url = Settings().database_url
    except ValueError as e:  # pydantic's ValidationError; it never echoes secret values
        return False, f"settings: {e}"
    engine = create_engine(url, pool_pre_ping=False, connect_args=_connect_args(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, f"database answers ({engine.url.get_backend_name()})"
    except Exception as e:  # noqa: BLE001 - any driver error means unhealthy; its class names the cause
        return False, f"database does not answer: {type(e).__name__}"
    finally:
        engine.dispose()


def _connect_args(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"connect_timeout": int(TIMEOUT_S)}
    if url.startswith("sqlite"):
        return {"timeout": TIMEOUT_S}
    return {}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: imp-healthcheck URL | imp-healthcheck --db")
        return 0 if argv and argv[0] in ("-h", "--help") else 1
    healthy, reason = check_db() if argv[0] == "--db" else check_http(argv[0])
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
