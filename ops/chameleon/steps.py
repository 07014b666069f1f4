"""up / down / status: the provisioning steps in order, each idempotent, timed, and recorded.

Every step first looks for what it would make (the lease by name, servers by name, the floating IP by
its marker), so a second ``up`` makes nothing and an ``up`` after a crash picks up where the last one
stopped. The state file is a record of progress and timings for ``status`` and the operator, not the
source of truth: deleting it loses nothing but the timings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ops.chameleon import remote
from ops.chameleon.cloud import ChameleonSite, LeaseInfo, ProvisionError
from ops.chameleon.plan import Plan


def default_state_path(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".state.json")


class State:
    """A small JSON record next to the plan, rewritten atomically after every step."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except (OSError, ValueError) as e:
            raise ProvisionError(f"state file {path} is unreadable ({e}); move it aside and rerun") from e

    def save(self) -> None:
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def known_hosts(self) -> Path:
        return self.path.with_name(self.path.stem + ".known_hosts")


class Provisioner:
    def __init__(self, plan: Plan, site: ChameleonSite, state: State, echo: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep):
        self.plan, self.site, self.state, self.echo, self.sleep = plan, site, state, echo, sleep
        self.created: list[str] = []  # what this run made, for the summary and the tests

    def _timed(self, name: str, fn: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            note = fn()
        finally:
            elapsed = time.monotonic() - started
            self.state.data.setdefault("timings_s", {})[name] = round(elapsed, 2)
            self.state.save()
        self.echo(f"[{name}] {note} ({elapsed:.1f} s)")

    # --- up --------------------------------------------------------------------------------------
    def up(self) -> list[str]:
        t0 = time.monotonic()
        self.state.data.update(plan=self.plan.name, site=self.plan.site, phase="up")
        self.state.data.pop("timings_s", None)
        steps = [("lease", self._ensure_lease), ("lease active", self._wait_lease),
                 ("servers", self._ensure_servers), ("servers active", self._wait_servers),
                 ("floating ip", self._ensure_fip), ("ssh", self._wait_ssh)]
        if self.plan.install is not None:
            steps.append(("install", self._install))
        for name, fn in steps:
            self._timed(name, fn)
        total = time.monotonic() - t0
        self.state.data.update(phase="running", up_total_s=round(total, 2))
        self.state.save()
        self.echo(f"up: done in {total:.1f} s; created {', '.join(self.created) or 'nothing (all present)'}")
        return self.created

    def _ensure_lease(self) -> str:
        lease = self.site.find_lease(self.plan.lease.name)
        if lease is None:
            lease = self.site.create_lease(self.plan.lease.name, self.plan.lease.duration_hours, self.plan.nodes)
            self.created.append(f"lease {lease.name}")
            note = f"created {lease.name} ({len(lease.reservations)} reservations)"
        else:
            note = f"found {lease.name} ({lease.status})"
        self.state.data["lease"] = {"id": lease.id, "name": lease.name}
        self._check_lease(lease)
        return note

    def _check_lease(self, lease: LeaseInfo) -> None:
        if lease.status == "ERROR":
            raise ProvisionError(f"lease {lease.name} is in ERROR: {lease.reason or 'Blazar gave no reason'}; "
                                 "run down to release it, then up (another site or fewer nodes may be needed)")

    def _wait_lease(self) -> str:
        lease_id = self.state.data["lease"]["id"]
        deadline = time.monotonic() + self.plan.timeouts.lease_active_s
        while True:
            lease = self.site.get_lease(lease_id)
            self._check_lease(lease)
            if lease.status == "ACTIVE":
                self.state.data["lease"]["reservations"] = {
                    g.name: self.site.reservation_for(lease, g)[0] for g in self.plan.nodes}
                return "ACTIVE"
            if time.monotonic() >= deadline:
                raise ProvisionError(f"lease {lease.name} still {lease.status} after "
                                     f"{self.plan.timeouts.lease_active_s:.0f} s; check its start date")
            self.sleep(self.plan.timeouts.poll_s)

    def _ensure_servers(self) -> str:
        existing = self.site.servers(self.plan.name)
        lease = self.site.get_lease(self.state.data["lease"]["id"])
        made = []
        for group, name in self.plan.server_names():
            srv = existing.get(name)
            if srv is not None and srv.status == "ERROR":
                # A server that failed to build never recovers; replace it (the reservation is ours).
                self.echo(f"[servers] {name} is in ERROR ({srv.fault or 'no fault given'}); replacing it")
                self.site.delete_server(srv.id)
                self._wait_gone(srv.id, name)
                srv = None
            if srv is None:
                reservation, flavor = self.site.reservation_for(lease, group)
                server_id = self.site.create_server(name, reservation, self.plan.image, flavor,
                                                    self.plan.key_pair, self.plan.network)
                made.append(name)
                self.created.append(f"server {name}")
                self.state.data.setdefault("servers", {})[name] = {"id": server_id}
                self.state.save()  # a crash right after a launch must not lose it
            else:
                self.state.data.setdefault("servers", {})[name] = {"id": srv.id}
        total = len(self.plan.server_names())
        return f"launched {', '.join(made)}" if made else f"all {total} present"

    def _wait_gone(self, server_id: str, name: str) -> None:
        deadline = time.monotonic() + self.plan.timeouts.server_active_s
        while self.site.server(server_id) is not None:
            if time.monotonic() >= deadline:
                raise ProvisionError(f"server {name} was not deleted within {self.plan.timeouts.server_active_s} s")
            self.sleep(self.plan.timeouts.poll_s)

    def _wait_servers(self) -> str:
        deadline = time.monotonic() + self.plan.timeouts.server_active_s
        pending = {name: rec["id"] for name, rec in self.state.data["servers"].items()}
        while pending:
            for name, server_id in list(pending.items()):
                srv = self.site.server(server_id)
                if srv is None:
                    raise ProvisionError(f"server {name} disappeared while booting; rerun up to relaunch it")
                if srv.status == "ERROR":
                    raise ProvisionError(f"server {name} went to ERROR: {srv.fault or 'no fault given'}; "
                                         "rerun up to replace it")
                if srv.status == "ACTIVE":
                    self.state.data["servers"][name]["fixed_ip"] = srv.fixed_ip
                    del pending[name]
            if pending and time.monotonic() >= deadline:
                raise ProvisionError(f"servers {', '.join(sorted(pending))} not ACTIVE after "
                                     f"{self.plan.timeouts.server_active_s:.0f} s")
            if pending:
                self.sleep(self.plan.timeouts.poll_s)
        return f"{len(self.state.data['servers'])} ACTIVE"

    def _ensure_fip(self) -> str:
        fip = self.site.find_fip(self.plan.fip_marker)
        note = "found"
        if fip is None:
            fip = self.site.allocate_fip(self.plan.fip_marker, self.plan.public_network)
            self.created.append(f"floating ip {fip['floating_ip_address']}")
            note = "allocated"
        address = fip["floating_ip_address"]
        self.state.data["floating_ip"] = {"id": fip["id"], "address": address}
        self.state.save()
        target = self.site.server(self.state.data["servers"][self.plan.public_server]["id"])
        if target is None:
            raise ProvisionError(f"server {self.plan.public_server} disappeared; rerun up to relaunch it")
        if address not in target.floating_ips:
            self.site.bind_fip(address, target.id)
            return f"{note} {address}, attached to {self.plan.public_server}"
        return f"{note} {address} on {self.plan.public_server}"

    def _wait_ssh(self) -> str:
        address = self.state.data["floating_ip"]["address"]
        t = self.plan.timeouts
        remote.wait_for_tcp(address, self.plan.ssh.port, t.ssh_s, t.poll_s, self.sleep)
        for group, name in self.plan.server_names():
            if group.install and name != self.plan.public_server:
                remote.wait_for_ssh_via(self.plan.ssh, self.state.data["servers"][name]["fixed_ip"],
                                        self.state.known_hosts, address, t.ssh_s, t.poll_s, self.sleep)
        return f"{address}:{self.plan.ssh.port} open"

    def _install(self) -> str:
        spec = self.plan.install
        address = self.state.data["floating_ip"]["address"]
        done = self.state.data.setdefault("installed", {})
        ran = []
        for group, name in self.plan.server_names():
            if not group.install:
                continue
            public = name == self.plan.public_server
            host = address if public else self.state.data["servers"][name]["fixed_ip"]
            # compose up -d is itself idempotent; rerunning it after a crash mid-install is safe.
            remote.install(self.plan.ssh, spec, host, self.state.known_hosts, group.services,
                           None if public else address, self.plan.timeouts.install_s)
            done[name] = spec.ref
            ran.append(name)
            self.state.save()
        return f"compose stack at {spec.ref} up on {', '.join(ran) or 'no node'}"

    # --- down ------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        removed: list[str] = []
        self.state.data.update(phase="down")
        started = time.monotonic()
        servers = self.site.servers(self.plan.name)
        wanted = {name for _, name in self.plan.server_names()}
        for name, srv in sorted(servers.items()):
            if name in wanted:
                self.site.delete_server(srv.id)
                removed.append(f"server {name}")
        for name, srv in sorted(servers.items()):
            if name in wanted:
                self._wait_gone(srv.id, name)
        fip = self.site.find_fip(self.plan.fip_marker)
        if fip is not None:
            self.site.release_fip(fip["id"])
            removed.append(f"floating ip {fip['floating_ip_address']}")
        lease = self.site.find_lease(self.plan.lease.name)
        if lease is not None:
            self.site.delete_lease(lease.id)
            removed.append(f"lease {lease.name}")
        self.state.known_hosts.unlink(missing_ok=True)
        self.state.forget()
        self.echo(f"down: removed {', '.join(removed) or 'nothing (already gone)'} "
                  f"({time.monotonic() - started:.1f} s)")
        return removed

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        lease = self.site.find_lease(self.plan.lease.name)
        servers = self.site.servers(self.plan.name)
        fip = self.site.find_fip(self.plan.fip_marker)
        report = {
            "lease": None if lease is None else {"name": lease.name, "status": lease.status, "reason": lease.reason},
            "servers": {name: (servers[name].status if name in servers else "absent")
                        for _, name in self.plan.server_names()},
            "floating_ip": None if fip is None else fip["floating_ip_address"],
            "installed": self.state.data.get("installed", {}),
            "last_up_timings_s": self.state.data.get("timings_s", {}),
        }
        lines = [f"lease: {'absent' if lease is None else lease.status}"
                 + (f" ({lease.reason})" if lease and lease.reason else "")]
        lines += [f"server {n}: {s}" for n, s in report["servers"].items()]
        lines.append(f"floating ip: {report['floating_ip'] or 'absent'}")
        lines += [f"installed on {n}: {ref}" for n, ref in report["installed"].items()]
        lines += [f"last up, {step}: {sec:.1f} s" for step, sec in report["last_up_timings_s"].items()]
        self.echo("\n".join(lines))
        return report
