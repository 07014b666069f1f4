"""A fake ``ssh`` for provisioning tests: runs the remote command locally in a folder per host.

Invoked like OpenSSH (``chameleon_ssh.py -p 22 -o ... [-J user@jump:22] user@host COMMAND``). It records
each call as a JSON line in $FAKE_SSH_LOG (host, jump, command, stdin), then runs COMMAND with bash in
$FAKE_SSH_ROOT/<host> as HOME, with ``git``, ``docker``, ``sudo`` and ``curl`` replaced by shims that
append their arguments to calls.log there: the install script really runs, and what it would have
done to a node is left for the test to read. If the file $FAKE_SSH_ROOT/refuse exists, the connection
is refused once (exit 255, as ssh does) and the file removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WITH_VALUE = {"-p", "-o", "-i", "-J", "-l", "-F", "-E"}
SHIMS = {
    "git": 'echo "git $*" >> "$HOME/calls.log"\n'
           # A clone holds what the repository at that ref holds: the compose file.
           'if [ "$1" = clone ]; then mkdir -p "${@: -1}/.git" "${@: -1}/ops/compose" && '
           'echo "services: {}" > "${@: -1}/ops/compose/compose.yaml"; fi\n'
           'if [ "$3" = checkout ]; then echo "${@: -1}" > "$2/.git/checked_out"; fi\n',
    # docker compose refuses files that are not there, as the real one does.
    "docker": 'echo "docker $*" >> "$HOME/calls.log"\n'
              'while [ $# -gt 0 ]; do case "$1" in -f|--env-file) [ -f "$2" ] || { echo "open $2: no such file" >&2; '
              'exit 14; };; esac; shift; done\n',
    "sudo": 'echo "sudo $1" >> "$HOME/calls.log"\nexec "$@"\n',
    "curl": 'echo "curl $*" >> "$HOME/calls.log"\nexit 1\n',
}


def main(argv: list[str]) -> int:
    opts, i = [], 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in WITH_VALUE:
            opts.append((argv[i], argv[i + 1]))
            i += 2
        else:
            opts.append((argv[i], None))
            i += 1
    target, command = argv[i], " ".join(argv[i + 1:])
    host = target.split("@", 1)[-1]
    jump = next((v for k, v in opts if k == "-J"), None)
    stdin = sys.stdin.buffer.read()
    root = Path(os.environ["FAKE_SSH_ROOT"])
    with open(os.environ["FAKE_SSH_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"host": host, "jump": jump, "command": command, "options": opts,
                              "stdin": stdin.decode(errors="replace")}) + "\n")
    refuse = root / "refuse"
    if refuse.exists():
        refuse.unlink()
        print(f"ssh: connect to host {host} port 22: Connection refused", file=sys.stderr)
        return 255
    home = root / host
    shims = root / "shims"
    shims.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    for name, body in SHIMS.items():
        path = shims / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    env = {"HOME": str(home), "PATH": f"{shims}:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", command], input=stdin, cwd=home, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
