"""Provisioning on Chameleon, end to end against a fake site over HTTP and a fake ssh that runs the install.

python-chi and the OpenStack clients run unchanged: only the site (Keystone, Blazar, Nova, Glance,
Neutron on 127.0.0.1) and the node behind ssh are fakes. Nothing here measures Chameleon's speed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ops.chameleon.cli import app
from tests.fakes.chameleon_cloud import APP_CRED_SECRET, FakeChameleon

FAKE_SSH = str(Path(__file__).resolve().parents[1] / "fakes" / "chameleon_ssh.py")
ENV_FILE = "IMP_API__TOKEN=s3cret-api-token-for-tests\nIMP_DB__URL=postgresql://imp:pw@postgres:5432/imp\n"


@pytest.fixture
def sshd():
    """A listening socket standing in for the node's sshd port (the provisioner waits for it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    with FakeChameleon() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FAKE_SSH_ROOT", str(tmp_path / "nodes"))
        monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "ssh.jsonl"))
        yield fake


def write_plan(tmp_path: Path, port: int, **overrides) -> Path:
    (tmp_path / "prod.env").write_text(ENV_FILE)
    plan = {
        "name": "imp-test", "site": "CHI@UC", "project": "CHI-000000",
        "lease": {"name": "imp-test-lease", "duration_hours": 6},
        "nodes": [{"name": "app", "count": 2, "node_type": "compute_skylake"},
                  {"name": "gpu", "count": 1, "node_type": "gpu_rtx_6000", "install": False}],
        "image": "CC-Ubuntu22.04", "key_pair": "imp-operator", "floating_ip": {"node": "app"},
        "ssh": {"port": port, "command": [sys.executable, FAKE_SSH]},
        "install": {"repo": "https://git.example.org/imp.git", "ref": "abc1234", "env_file": "prod.env"},
        "timeouts": {"poll_s": 0.01, "ssh_s": 5, "lease_active_s": 5, "server_active_s": 5},
    }
    plan.update(overrides)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def ssh_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "ssh.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_up_reserves_launches_attaches_and_installs_exactly_the_plan(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    result = run("up", str(plan))
    assert result.exit_code == 0, result.output
    assert cloud.created == [("lease", "imp-test-lease"), ("server", "imp-test-app-1"), ("server", "imp-test-app-2"),
                             ("server", "imp-test-gpu-1"), ("floating_ip", "127.0.0.1")]
    (lease,) = cloud.leases.values()
    wanted = sorted((r["resource_type"], r["resource_properties"], r["min"], r["max"]) for r in lease["reservations"])
    assert wanted == [("physical:host", '["==", "$node_type", "compute_skylake"]', 2, 2),
                      ("physical:host", '["==", "$node_type", "gpu_rtx_6000"]', 1, 1)]
    by_type = {r["resource_properties"]: r["id"] for r in lease["reservations"]}
    servers = {s["name"]: s for s in cloud.servers.values()}
    # Each server boots on its group's reservation, from the plan's image, with the plan's key.
    assert servers["imp-test-gpu-1"]["metadata"]["reservation"] == by_type['["==", "$node_type", "gpu_rtx_6000"]']
    assert servers["imp-test-app-2"]["metadata"]["reservation"] == by_type['["==", "$node_type", "compute_skylake"]']
    assert {s["key_name"] for s in servers.values()} == {"imp-operator"}
    floating = [a["addr"] for a in servers["imp-test-app-1"]["addresses"]["sharednet1"]
                if a["OS-EXT-IPS:type"] == "floating"]
    assert floating == ["127.0.0.1"]
    # The stack went onto both app servers (the second through the first), not onto the GPU node.
    installs = [c for c in ssh_calls(tmp_path) if "compose" in c["command"]]
    assert [(c["host"], c["jump"]) for c in installs] == [("127.0.0.1", None), ("10.52.0.11", f"cc@127.0.0.1:{sshd}")]
    node = tmp_path / "nodes" / "127.0.0.1"
    assert (node / "imp/ops/compose/imp.env").read_text() == ENV_FILE
    assert (node / "imp/ops/compose/imp.env").stat().st_mode & 0o777 == 0o600
    assert (node / "imp/.git/checked_out").read_text().strip() == "abc1234"
    calls = (node / "calls.log").read_text()
    assert "git clone --quiet https://git.example.org/imp.git imp" in calls
    assert "docker compose -f ops/compose/compose.yaml --env-file ops/compose/imp.env up -d" in calls
    # Every step is timed, printed, and recorded for status.
    state = json.loads((tmp_path / "plan.state.json").read_text())
    assert list(state["timings_s"]) == ["lease", "lease active", "servers", "servers active", "floating ip", "ssh",
                                        "install"]
    for step in state["timings_s"]:
        assert f"[{step}] " in result.output
    assert "up: done in" in result.output
    assert APP_CRED_SECRET not in result.output and "s3cret-api-token" not in result.output


def test_second_up_finds_everything_and_creates_nothing(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    assert run("up", str(plan)).exit_code == 0
    made = list(cloud.created)
    second = run("up", str(plan))
    assert second.exit_code == 0, second.output
    assert cloud.created == made
    assert "created nothing (all present)" in second.output
    assert "found imp-test-lease (ACTIVE)" in second.output


def test_up_with_ref_installs_that_commit_and_refuses_a_hostile_one(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd, nodes=[{"name": "app", "node_type": "compute_skylake"}])
    bad = run("up", str(plan), "--ref", "main;reboot")
    assert bad.exit_code == 1 and "--ref 'main;reboot': not a git ref name" in bad.output
    assert cloud.requests == []
    assert run("up", str(plan)).exit_code == 0
    result = run("up", str(plan), "--ref", "0123abcd")
    assert result.exit_code == 0, result.output
    node = tmp_path / "nodes" / "127.0.0.1"
    assert (node / "imp/.git/checked_out").read_text().strip() == "0123abcd"
    assert "git -C imp fetch --quiet --tags origin" in (node / "calls.log").read_text()  # reused the checkout


def test_up_resumes_after_a_failed_server_launch_without_a_second_lease(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    cloud.fail_server_creates = 1
    first = run("up", str(plan))
    assert first.exit_code == 1
    assert "launching a server" in first.output and "Unexpected API Error" in first.output
    assert cloud.created == [("lease", "imp-test-lease")]
    second = run("up", str(plan))
    assert second.exit_code == 0, second.output
    assert [kind for kind, _ in cloud.created].count("lease") == 1
    assert sorted(name for kind, name in cloud.created if kind == "server") == [
        "imp-test-app-1", "imp-test-app-2", "imp-test-gpu-1"]


def test_up_resumes_after_the_state_file_is_lost_and_an_install_was_refused(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd, nodes=[{"name": "app", "node_type": "compute_skylake"}])
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "refuse").write_text("")
    first = run("up", str(plan))
    assert first.exit_code == 1 and "install on 127.0.0.1 failed (exit 255)" in first.output
    (tmp_path / "plan.state.json").unlink()
    made = list(cloud.created)
    second = run("up", str(plan))
    assert second.exit_code == 0, second.output
    assert cloud.created == made  # found by name and marker, not by the lost state
    assert (tmp_path / "nodes" / "127.0.0.1" / "imp/ops/compose/imp.env").read_text() == ENV_FILE


def test_a_server_that_fails_to_build_is_replaced_on_the_next_up(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd, install=None)
    cloud.server_polls_to_active = 10**6  # stays in BUILD until the test marks it
    assert run("up", str(plan)).exit_code == 1
    broken = next(s for s in cloud.servers.values() if s["name"] == "imp-test-app-1")
    broken.update(status="ERROR", fault={"message": "No valid host was found.", "code": 500})
    cloud.server_polls_to_active = 0
    for srv in cloud.servers.values():
        if srv["status"] == "BUILD":
            srv["status"] = "ACTIVE"
    result = run("up", str(plan))
    assert result.exit_code == 0, result.output
    assert "imp-test-app-1 is in ERROR (No valid host was found.); replacing it" in result.output
    assert ("server", "imp-test-app-1") in cloud.deleted
    assert [n for k, n in cloud.created if k == "server"].count("imp-test-app-1") == 2


def test_down_removes_everything_and_a_second_down_is_a_no_op(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    assert run("up", str(plan)).exit_code == 0
    result = run("down", str(plan))
    assert result.exit_code == 0, result.output
    assert sorted(cloud.deleted) == sorted(cloud.created)
    assert cloud.deleted[-1] == ("lease", "imp-test-lease")  # servers and IP go before their lease
    assert not cloud.leases and not cloud.servers and not cloud.fips
    assert not (tmp_path / "plan.state.json").exists()
    again = run("down", str(plan))
    assert again.exit_code == 0 and "removed nothing (already gone)" in again.output
    assert len(cloud.deleted) == len(cloud.created)


def test_a_lease_that_ends_in_error_stops_up_with_blazars_reason(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    cloud.lease_final_status = "ERROR"
    result = run("up", str(plan))
    assert result.exit_code == 1
    assert "lease imp-test-lease is in ERROR: not enough hosts available" in result.output
    assert not cloud.servers and not cloud.fips
    status = run("status", str(plan))
    assert "lease: ERROR (not enough hosts available)" in status.output


def test_kvm_plan_reserves_flavors_and_boots_the_reserved_flavor(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd, site="KVM@TACC", nodes=[{"name": "app", "count": 1, "flavor": "m1.medium"}],
                      install=None)
    result = run("up", str(plan))
    assert result.exit_code == 0, result.output
    (lease,) = cloud.leases.values()
    (res,) = lease["reservations"]
    assert (res["resource_type"], res["flavor_id"], res["amount"]) == ("flavor:instance", "fl-medium", 1)
    (srv,) = cloud.servers.values()
    assert srv["flavor"]["original_name"] == f"reservation:{res['id']}"
    assert not ssh_calls(tmp_path)  # no install section: reserve and launch only


def test_status_reports_lease_servers_address_and_timings(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd)
    before = run("status", str(plan), "--json")
    assert json.loads(before.output)["servers"] == {"imp-test-app-1": "absent", "imp-test-app-2": "absent",
                                                    "imp-test-gpu-1": "absent"}
    assert run("up", str(plan)).exit_code == 0
    after = run("status", str(plan))
    assert after.exit_code == 0
    for line in ["lease: ACTIVE", "server imp-test-gpu-1: ACTIVE", "floating ip: 127.0.0.1",
                 "installed on imp-test-app-2: abc1234", "last up, install:"]:
        assert line in after.output


@pytest.mark.parametrize(("override", "message"), [
    ({"nodes": [{"name": "app", "flavor": "m1.medium"}]}, "nodes.0.flavor: CHI@UC reserves bare-metal hosts"),
    ({"nodes": [{"name": "app", "count": 0, "node_type": "compute_skylake"}]}, "nodes.0.count:"),
    ({"nodes": [{"name": "app", "node_type": "compute_skylake", "flavor": "m1.medium"}]},
     "give exactly one of node_type (bare metal) or flavor (KVM)"),
    ({"floating_ip": {"node": "web"}}, "floating_ip.node: no node group named 'web'"),
    ({"key_pair": None}, "key_pair:"),
    ({"lease": {"name": "Bad Name!", "duration_hours": 6}}, "lease.name:"),
    ({"lease": {"name": "imp", "duration_hours": 400}}, "lease.duration_hours:"),
    ({"flavour": "typo"}, "flavour: Extra inputs are not permitted"),
])
def test_a_bad_plan_is_refused_naming_the_field_before_any_cloud_call(cloud, tmp_path, sshd, override, message):
    plan = write_plan(tmp_path, sshd, **override)
    result = run("up", str(plan))
    assert result.exit_code == 1
    assert message in result.output
    assert cloud.requests == []


def test_missing_credentials_are_a_clear_error(cloud, tmp_path, sshd, monkeypatch):
    monkeypatch.delenv("OS_APPLICATION_CREDENTIAL_ID")
    result = run("status", str(write_plan(tmp_path, sshd)))
    assert result.exit_code == 1 and "no OpenStack credentials in the environment" in result.output


def test_wrong_credentials_are_reported_without_the_secret(cloud, tmp_path, sshd, monkeypatch):
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_SECRET", "wrong-secret-value")
    result = run("up", str(write_plan(tmp_path, sshd)))
    assert result.exit_code == 1 and "listing leases" in result.output
    assert "wrong-secret-value" not in result.output


def test_python_dash_m_runs_the_cli(cloud, tmp_path, sshd):
    plan = write_plan(tmp_path, sshd, site="Mars@Home")
    done = subprocess.run([sys.executable, "-m", "ops.chameleon", "status", str(plan)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1
    assert "site: String should match pattern" in done.stderr
