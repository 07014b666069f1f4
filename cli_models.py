"""The learning loop's commands: `imp train ...` and `imp models ...` (registered by cli.py).

Thin, like the rest of the CLI: app.py builds the loop, the registry and the
engine; these commands parse, call them and print. `--json` shapes are stable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import training.background as background_jobs
from app import build_adapter_loop, build_embedder_loop, build_model_registry, build_retrain_scheduler
from core.errors import ImpError

train_cli = typer.Typer(no_args_is_help=True, help="Train IMP's models on corpora and 👍/👎 feedback.")
models_cli = typer.Typer(help="The registered models: versions, champion and challenger, promotion and rollback.")
out = Console()
err = Console(stderr=True)


def _fail(e: ImpError) -> None:
    err.print(f"[red]error[/red] ({e.code}): {escape(e.detail)}")
    raise typer.Exit(2)


def _engine_and_settings():  # noqa: ANN202
    from cli import _engine, _settings_or_exit

    settings = _settings_or_exit()
    return _engine(settings), settings


@train_cli.command("embedder")
def train_embedder(
    data: Annotated[Path | None, typer.Option(help="Pairs JSONL or meeting-corpus JSONL (QMSum format)")] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Evaluation set (default: a held-back slice)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=100, help="Epochs (default IMP_TRAIN__EPOCHS)")] = None,
    trials: Annotated[int, typer.Option(min=1, max=256, help="Ray Tune trials; the best one is the candidate")] = 1,
    no_feedback: Annotated[bool, typer.Option("--no-feedback", help="Leave 👍/👎 feedback out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
    background: Annotated[bool, typer.Option("--background", help="Print a job id at once and train in a "
                                             "process of its own; follow it with `imp train status ID`")] = False,
    job_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """Fine-tune the serving embedder; promote it only if it beats the champion on evaluation."""
    for path in (data, eval_file):
        if path is not None and not path.is_file():
            err.print(f"[red]error[/red]: no such file: {escape(str(path))}")
            raise typer.Exit(2)
    if background:
        args = ["train", "embedder", "--trials", str(trials), "--json"]
        args += ["--data", str(data.resolve())] if data else []
        args += ["--eval", str(eval_file.resolve())] if eval_file else []
        args += ["--epochs", str(epochs)] if epochs else []
        args += ["--no-feedback"] if no_feedback else []
        from cli import _settings_or_exit

        job = background_jobs.start(_settings_or_exit().data_dir / "training" / "jobs", args)
        typer.echo(json.dumps(job) if as_json else f"training in the background: job {job['job_id']} "
                   f"(imp train status {job['job_id']}; log {job['log']})")
        return
    engine, settings = _engine_and_settings()
    say = (lambda text: err.print(escape(text), highlight=False)) if as_json else (
        lambda text: out.print(escape(text), highlight=False))
    try:
        loop = build_embedder_loop(settings, engine, trials=trials, epochs=epochs, feedback=not no_feedback)
        outcome = loop.run(data, eval_file, say=say)
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    if job_file is not None:
        background_jobs.finish(job_file, outcome.to_json())
    if as_json:
        typer.echo(json.dumps({k: v for k, v in outcome.to_json().items()
                               if k in ("run_id", "model", "version", "metrics", "promoted", "reason", "served_as", "training",
                                        "seconds", "dataset")}))
        return
    table = Table("metric", "champion", "candidate")
    for key in ("hit@5", "recall@5", "mrr@10"):
        table.add_row(key, f"{outcome.metrics['champion'][key]:.3f}", f"{outcome.metrics['candidate'][key]:.3f}")
    out.print(table)
    verdict = f"promoted, serving as {outcome.served_as}" if outcome.promoted else "not promoted"
    out.print(f"{outcome.model} version {outcome.version} (MLflow run {outcome.run_id}): {verdict}")


@train_cli.command("adapter")
def train_adapter_cmd(
    data: Annotated[Path | None, typer.Option(help="JSONL of pairs with answers, QMSum meetings or rated answers")] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Evaluation examples (default: a held-back slice)")] = None,
    no_feedback: Annotated[bool, typer.Option("--no-feedback", help="Leave 👍/👎 feedback out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """Train a LoRA adapter of the transformers answer model (IMP_LLM__PATH); promote it only if it passes the gate."""
    for path in (data, eval_file):
        if path is not None and not path.is_file():
            err.print(f"[red]error[/red]: no such file: {escape(str(path))}")
            raise typer.Exit(2)
    engine, settings = _engine_and_settings()
    say = (lambda text: err.print(escape(text), highlight=False)) if as_json else (
        lambda text: out.print(escape(text), highlight=False))
    try:
        outcome = build_adapter_loop(settings, engine, feedback=not no_feedback).run(data, eval_file, say=say)
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps({k: v for k, v in outcome.to_json().items()
                               if k in ("run_id", "model", "version", "metrics", "promoted", "reason", "served_as",
                                        "training", "seconds", "dataset")}, default=str))
        return
    table = Table("metric", "champion", "candidate")
    for key in ("citation_validity", "rouge_l"):
        table.add_row(key, f"{outcome.metrics['champion'][key]:.3f}", f"{outcome.metrics['candidate'][key]:.3f}")
    out.print(table)
    verdict = "promoted (applies at the next start of the service)" if outcome.promoted else "not promoted"
    out.print(f"{outcome.model} version {outcome.version} (MLflow run {outcome.run_id}): {verdict}: "
              f"{escape(outcome.reason)}", highlight=False)


@train_cli.command("status")
def train_status(
    job_id: Annotated[str, typer.Argument(help="The id `imp train ... --background` printed")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Where a background training run is: running, done (with its outcome) or failed (with its log's end)."""
    from cli import _settings_or_exit

    try:
        job = background_jobs.status(_settings_or_exit().data_dir / "training" / "jobs", job_id)
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(job))
        return
    out.print(f"job {escape(job_id)}: {job['status']}", highlight=False)
    if job.get("outcome"):
        o = job["outcome"]
        out.print(f"{o['model']} version {o['version']}: {'promoted' if o['promoted'] else 'not promoted'}: "
                  f"{escape(o['reason'])}", highlight=False)
    elif job.get("log_tail"):
        out.print(escape(job["log_tail"]), highlight=False)


@models_cli.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List registered versions with their aliases, metrics, MLflow runs and 👍/👎 counts."""
    if ctx.invoked_subcommand is not None:
        return
    from training.registry import BASE, CHAMPION, NAMES

    engine, settings = _engine_and_settings()
    try:
        registry = build_model_registry(settings)
        served = {(m.name, m.slot): m.version for m in engine.served_models()}
        rows = []
        for name in NAMES:
            counts = engine.feedback_by_version(name)
            champion = served.get((name, CHAMPION), BASE)
            base_aliases = [CHAMPION] if champion == BASE else []
            rows.append({"name": name, "version": BASE, "aliases": base_aliases, "run_id": None, "metrics": {},
                         "serving": [slot for (n, slot), v in served.items() if n == name and v == BASE]
                         or base_aliases, "up": counts.get(BASE, (0, 0))[0], "down": counts.get(BASE, (0, 0))[1]})
            for v in registry.versions(name):
                up, down = counts.get(v.version, (0, 0))
                rows.append({"name": name, "version": v.version, "aliases": list(v.aliases), "run_id": v.run_id,
                             "metrics": {k: v.metrics[k] for k in sorted(v.metrics) if k.startswith(("candidate_",
                                                                                                   "champion_"))},
                             "serving": [slot for (n, slot), ver in served.items() if n == name and ver == v.version],
                             "gate": v.tags.get("gate"), "up": up, "down": down})
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps({"models": rows, "tracking_uri": registry.tracking_uri}))
        return
    table = Table("model", "version", "aliases", "serving", "gate", "hit@5 (champion → candidate)", "👍", "👎", "run")
    for r in rows:
        m = r["metrics"]
        hit = (f"{m['champion_hit_at_5']:.3f} → {m['candidate_hit_at_5']:.3f}"
               if "candidate_hit_at_5" in m and "champion_hit_at_5" in m else "")
        table.add_row(r["name"], r["version"], ", ".join(r["aliases"]), ", ".join(r["serving"]), r.get("gate") or "",
                      hit, str(r["up"]), str(r["down"]), (r["run_id"] or "")[:12])
    out.print(table)


@models_cli.command("promote")
def promote_cmd(
    name: Annotated[str, typer.Argument(help="imp-embedder or imp-answer-adapter")],
    version: Annotated[str, typer.Argument(help="A registered version, or 'base' for the bundled model")],
) -> None:
    """Make VERSION the champion (an embedder is re-indexed first, while search keeps answering)."""
    from training.promotion import promote

    engine, settings = _engine_and_settings()
    try:
        report = promote(engine, build_model_registry(settings), name, version,
                         progress=lambda done, total: err.print(f"re-indexing {done}/{total}", highlight=False))
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    out.print(f"{escape(name)} version {escape(version)} is champion ({_switch_text(report)})", highlight=False)


@models_cli.command("rollback")
def rollback_cmd(name: Annotated[str, typer.Argument(help="imp-embedder or imp-answer-adapter")]) -> None:
    """Serve the previous champion again (its index was kept: only what changed since is embedded)."""
    from training.promotion import rollback

    engine, settings = _engine_and_settings()
    try:
        report = rollback(engine, build_model_registry(settings), name)
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    out.print(f"{escape(name)} rolled back to version {escape(report.version)} ({_switch_text(report)})",
              highlight=False)


@models_cli.command("canary")
def canary_cmd(
    settle: Annotated[bool, typer.Option("--settle", help="Act on the verdict: promote or retire the challenger")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """How the challenger rates against the champion (👍 rate per served version)."""
    from training.promotion import settle_canary, verdict
    from training.registry import EMBEDDER

    engine, settings = _engine_and_settings()
    try:
        min_ratings = settings.models.canary_min_ratings
        v = (settle_canary(engine, build_model_registry(settings), EMBEDDER, min_ratings=min_ratings) if settle
             else verdict(engine, EMBEDDER, min_ratings=min_ratings))
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps({"decision": v.decision, "reason": v.reason, "champion": list(v.champion),
                               "challenger": list(v.challenger), "acted": settle}))
        return
    out.print(f"{v.decision}: {escape(v.reason)}", highlight=False)


def _switch_text(report) -> str:  # noqa: ANN001 - core.models.SwitchReport
    if report.restart_required:
        return "the service applies it at its next start"
    return f"{report.embedded} chunks embedded in {report.seconds:.1f} s"


def worker() -> None:
    """Run scheduled jobs until stopped: the retraining check (IMP_SCHEDULER__RETRAIN_CRON), the drift check
    (every IMP_MONITOR__INTERVAL_S) and the retention purge (IMP_RETENTION__CRON)."""
    import signal

    from cli import _engine, _settings_or_exit

    settings = _settings_or_exit()
    engine = _engine(settings)
    try:
        scheduler = build_retrain_scheduler(settings, engine, background=False)
    except ImpError as e:
        engine.close()
        _fail(e)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    err.print(f"IMP worker: retraining check on '{escape(settings.scheduler.retrain_cron)}', drift check every "
              f"{settings.monitor.interval_s} s, retention purge on '{escape(settings.retention.cron)}' "
              f"({escape(settings.scheduler.timezone)}). Ctrl-C stops it.", highlight=False)
    try:
        scheduler.start()  # blocks until shutdown
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)
    finally:
        engine.close()
