"""The provisioning plan: what to reserve on Chameleon, what to launch, and what to install, validated.

A plan is a YAML (or TOML) file; ``load_plan`` reads it and refuses anything malformed with a
``PlanError`` that names the offending field (``nodes.1.flavor: ...``), before any call to the cloud.
Bare-metal sites (CHI@UC, CHI@TACC, ...) reserve hosts by ``node_type``; KVM@TACC reserves VMs by
``flavor``. Names become OpenStack resource names, so they are kept to a safe alphabet.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ImpError

NAME = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
# Installing Docker on a fresh Chameleon image (CC-Ubuntu22.04 ships without it). An operator whose
# image already has Docker can set ``install.prepare: []``.
DEFAULT_PREPARE = [
    "command -v docker >/dev/null 2>&1 || (curl -fsSL https://get.docker.com | sudo sh)",
]


class PlanError(ImpError):
    """The plan file is missing, unreadable, or fails validation (the message names the field)."""

    code = "bad_plan"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeaseSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME)]
    # Chameleon allows leases of up to 7 days.
    duration_hours: Annotated[float, Field(gt=0, le=168)] = 24


class NodeGroup(_Strict):
    """``count`` servers of one kind: bare-metal hosts of a ``node_type``, or VMs of a ``flavor``."""

    name: Annotated[str, Field(pattern=NAME)]
    count: Annotated[int, Field(ge=1, le=20)] = 1
    node_type: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] | None = None
    flavor: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]+$")] | None = None
    install: bool = True  # run the compose stack on these servers
    services: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]] = []  # empty: every service

    @model_validator(mode="after")
    def _one_kind(self) -> NodeGroup:
        if (self.node_type is None) == (self.flavor is None):
            raise ValueError("give exactly one of node_type (bare metal) or flavor (KVM)")
        return self


class FloatingIpSpec(_Strict):
    node: Annotated[str, Field(pattern=NAME)]  # the group whose first server gets the public address


class SshSpec(_Strict):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")] = "cc"
    private_key: str | None = None  # None: ssh's own defaults and agent
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    # The ssh client to run (argv prefix); tests point it at a fake node.
    command: list[str] = ["ssh"]


class InstallSpec(_Strict):
    repo: Annotated[str, Field(min_length=1, pattern=r"^(https://|git@|ssh://|file://|/)[A-Za-z0-9._:/@~+%-]+$")]
    ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]+$")] = "main"
    env_file: str  # local path (relative to the plan), copied to the node with mode 600
    compose_file: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]+$")] = "ops/compose/compose.yaml"
    # The name the stack expects its settings under, next to the compose file (ops/compose's env_file).
    env_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "imp.env"
    profiles: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]] = []  # e.g. ["slack"]
    checkout_dir: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]+$")] = "imp"
    prepare: list[str] = DEFAULT_PREPARE


class Timeouts(_Strict):
    lease_active_s: Annotated[float, Field(gt=0)] = 900
    server_active_s: Annotated[float, Field(gt=0)] = 1800  # bare metal boots in ~10 min, sometimes 20
    ssh_s: Annotated[float, Field(gt=0)] = 900
    install_s: Annotated[float, Field(gt=0)] = 1800
    poll_s: Annotated[float, Field(gt=0)] = 10


class Plan(_Strict):
    name: Annotated[str, Field(pattern=NAME)]  # prefix of server names; marks the floating IP
    site: Annotated[str, Field(pattern=r"^(CHI@[A-Za-z]+|KVM@TACC|CHI@Edge)$")]
    project: str | None = None  # Chameleon project (CHI-xxxxxx); the credentials' own project if unset
    lease: LeaseSpec
    nodes: Annotated[list[NodeGroup], Field(min_length=1)]
    image: Annotated[str, Field(min_length=1)] = "CC-Ubuntu22.04"
    network: Annotated[str, Field(min_length=1)] = "sharednet1"
    public_network: Annotated[str, Field(min_length=1)] = "public"
    key_pair: Annotated[str, Field(min_length=1)]
    floating_ip: FloatingIpSpec
    ssh: SshSpec = SshSpec()
    install: InstallSpec | None = None  # None: reserve and launch only
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        names = [g.name for g in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("nodes: two groups share a name")
        kvm = self.site.startswith("KVM@")
        for i, group in enumerate(self.nodes):
            if kvm and group.node_type:
                raise ValueError(f"nodes.{i}.node_type: {self.site} reserves VMs by flavor, not node_type")
            if not kvm and group.flavor:
                raise ValueError(f"nodes.{i}.flavor: {self.site} reserves bare-metal hosts by node_type")
        kinds = [g.node_type or g.flavor for g in self.nodes]
        if len(set(kinds)) != len(kinds):
            # One reservation per kind keeps reservations and groups matched unambiguously.
            raise ValueError("nodes: two groups ask for the same node_type/flavor; merge them with count")
        if self.floating_ip.node not in names:
            raise ValueError(f"floating_ip.node: no node group named {self.floating_ip.node!r}")
        return self

    def server_names(self) -> list[tuple[NodeGroup, str]]:
        return [(g, f"{self.name}-{g.name}-{i + 1}") for g in self.nodes for i in range(g.count)]

    @property
    def public_server(self) -> str:
        return f"{self.name}-{self.floating_ip.node}-1"

    @property
    def fip_marker(self) -> str:
        """The floating IP's description: how a rerun finds the address it allocated."""
        return f"imp-provision:{self.name}"


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def load_plan(path: Path) -> Plan:
    """Read and validate a plan; relative paths in it are resolved against the plan's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"cannot read plan {path}: {e.strerror}") from e
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml  # PyYAML: only the YAML plans need it

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - both parsers' errors become one clear PlanError
        raise PlanError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from e
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan is a mapping of fields, got {type(data).__name__}")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        raise PlanError(f"{path}: {_describe(e)}") from e
    if plan.install is not None:
        env = (path.parent / plan.install.env_file).expanduser()
        plan = plan.model_copy(update={"install": plan.install.model_copy(update={"env_file": str(env)})})
    if plan.ssh.private_key:
        key = (path.parent / Path(plan.ssh.private_key).expanduser())
        plan = plan.model_copy(update={"ssh": plan.ssh.model_copy(update={"private_key": str(key)})})
    return plan
