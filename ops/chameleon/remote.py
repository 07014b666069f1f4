"""Reaching the launched servers: wait for SSH, then install the compose stack over it.

OpenSSH runs as a subprocess rather than python-chi's Fabric helpers: the operator's ssh config,
agent and ProxyJump work unchanged, and servers without a public address are reached through the
one that has it (``-J``). Host keys are accepted on first contact into a known_hosts file of this
deployment (Chameleon reuses addresses, so the operator's own file would soon hold stale keys).
The env file (secrets) travels on ssh's stdin into a 600 file on the node; it is never echoed.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ops.chameleon.cloud import ProvisionError
from ops.chameleon.plan import InstallSpec, SshSpec


def wait_for_tcp(host: str, port: int, timeout_s: float, poll_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(poll_s, 10)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ProvisionError(f"ssh: {host}:{port} did not accept connections within {timeout_s:.0f} s "
                                     f"({e.strerror or e})") from e
        sleep(poll_s)


def ssh_argv(spec: SshSpec, host: str, known_hosts: Path, jump: str | None = None) -> list[str]:
    argv = [*spec.command, "-p", str(spec.port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}"]
    if spec.private_key:
        argv += ["-i", spec.private_key, "-o", "IdentitiesOnly=yes"]
    if jump:
        argv += ["-J", f"{spec.user}@{jump}:{spec.port}"]
    return [*argv, f"{spec.user}@{host}"]


def install_script(spec: InstallSpec, services: list[str]) -> str:
    """The shell the node runs: prepare, check out the ref, write the env file from stdin, compose up."""
    d = shlex.quote(spec.checkout_dir)
    env = shlex.quote(f"{Path(spec.compose_file).parent.as_posix()}/{spec.env_name}")  # relative to the checkout
    profiles = "".join(f" --profile {shlex.quote(p)}" for p in spec.profiles)
    lines = ["set -eu", *spec.prepare,
             f"if [ -d {d}/.git ]; then git -C {d} fetch --quiet --tags origin; "
             f"else git clone --quiet {shlex.quote(spec.repo)} {d}; fi",
             f"git -C {d} checkout --quiet --detach {shlex.quote(spec.ref)} 2>/dev/null "
             f"|| git -C {d} checkout --quiet --detach origin/{shlex.quote(spec.ref)}",
             f"test -f {d}/{shlex.quote(spec.compose_file)} || {{ echo '{spec.compose_file} is not in "
             f"{spec.ref}' >&2; exit 3; }}",
             f"(umask 077 && cat > {d}/{env})",
             f"cd {d} && sudo docker compose -f {shlex.quote(spec.compose_file)} --env-file {env}{profiles} up -d "
             "--remove-orphans" + "".join(f" {shlex.quote(s)}" for s in services)]
    return "\n".join(lines) + "\n"


def install(spec: SshSpec, install_spec: InstallSpec, host: str, known_hosts: Path, services: list[str],
            jump: str | None, timeout_s: float) -> None:
    try:
        env_bytes = Path(install_spec.env_file).read_bytes()
    except OSError as e:
        raise ProvisionError(f"install.env_file: cannot read {install_spec.env_file}: {e.strerror}") from e
    argv = [*ssh_argv(spec, host, known_hosts, jump), "bash -c " + shlex.quote(install_script(install_spec, services))]
    try:
        done = subprocess.run(argv, input=env_bytes, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as e:
        raise ProvisionError(f"ssh.command: {spec.command[0]!r} not found") from e
    except subprocess.TimeoutExpired as e:
        raise ProvisionError(f"install on {host} did not finish within {timeout_s:.0f} s") from e
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ProvisionError(f"install on {host} failed (exit {done.returncode}): " + " | ".join(tail))


def wait_for_ssh_via(spec: SshSpec, host: str, known_hosts: Path, jump: str, timeout_s: float, poll_s: float,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until a server behind the public one answers ssh (it may boot a little after it turns ACTIVE)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done = subprocess.run([*ssh_argv(spec, host, known_hosts, jump), "true"], capture_output=True,
                                  timeout=max(poll_s, 30), check=False)
            if done.returncode == 0:
                return
            why = done.stderr.decode(errors="replace").strip()[-300:]
        except subprocess.TimeoutExpired:
            why = "timed out"
        if time.monotonic() >= deadline:
            raise ProvisionError(f"ssh: {host} (through {jump}) did not answer within {timeout_s:.0f} s: {why}")
        sleep(poll_s)
