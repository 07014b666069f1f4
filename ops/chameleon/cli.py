"""The provisioning commands: up, down and status of one plan file; errors become one line and exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from core.errors import ImpError
from ops.chameleon.cloud import ChameleonSite
from ops.chameleon.plan import InstallSpec, PlanError, load_plan
from ops.chameleon.steps import Provisioner, State, default_state_path

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Provision IMP on Chameleon Cloud from a plan file (python-chi).")
PlanArg = Annotated[Path, typer.Argument(help="the plan file (YAML or TOML)")]
StateOpt = Annotated[Path | None, typer.Option(help="state file; default: PLAN's name + .state.json")]


def _provisioner(plan_path: Path, state: Path | None, ref: str | None = None) -> Provisioner:
    plan = load_plan(plan_path)
    if ref and plan.install is not None:
        # Deploying a given commit without editing the plan: what CI passes.
        try:
            install = InstallSpec.model_validate({**plan.install.model_dump(), "ref": ref})
        except ValidationError as e:
            raise PlanError(f"--ref {ref!r}: not a git ref name") from e
        plan = plan.model_copy(update={"install": install})
    return Provisioner(plan, ChameleonSite(plan.site, plan.project), State(state or default_state_path(plan_path)),
                       echo=typer.echo)


def _run(fn) -> None:
    try:
        fn()
    except ImpError as e:
        typer.echo(f"error: {e.detail}", err=True)
        raise typer.Exit(1) from None


@app.command()
def up(plan: PlanArg, state: StateOpt = None,
       ref: Annotated[str | None, typer.Option(help="git ref to install, instead of the plan's")] = None) -> None:
    """Reserve, launch, attach the floating IP, wait for ssh and install the stack; reruns resume."""
    _run(lambda: _provisioner(plan, state, ref).up())


@app.command()
def down(plan: PlanArg, state: StateOpt = None) -> None:
    """Delete the servers, release the floating IP and delete the lease; a no-op when all are gone."""
    _run(lambda: _provisioner(plan, state).down())


@app.command()
def status(plan: PlanArg, state: StateOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Show the lease, the servers, the floating IP and the last up's timings."""
    def show() -> None:
        p = _provisioner(plan, state)
        if as_json:
            p.echo = lambda _line: None
            typer.echo(json.dumps(p.status(), indent=2))
        else:
            p.status()

    _run(show)


def main() -> None:
    app()
