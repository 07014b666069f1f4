"""The learning loop end to end on the CPU: Ray Train, MLflow, the gate, serving, rollback, canary, restart.

Real parts only: a local Ray cluster, MLflow in a SQLite file (and once a real
`mlflow server` process), Chroma and SQLite under a temp folder, the bundled MiniLM.
The data teaches office jargon ("Who is the DRI for X?" -> "Y leads the X"), a lesson
the held-out projects need; the same questions paired with wrong passages must be refused.
The gate's margin is 0 here (hit@5 is already 1.0 on so small a pool): a candidate is
promoted when it ranks no worse, refused when its MRR@10 drops.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import build_embedder_loop, build_engine, build_model_registry
from core.config import Settings
from core.models import Feedback
from training.promotion import promote, rollback, served_version, settle_canary, start_canary
from training.raycluster import ray_session
from training.registry import BASE, CHALLENGER, CHAMPION, EMBEDDER, ModelRegistry

from tests.conftest import SAMPLES
from tests.integration.jargon import HELD_OUT, SHUFFLED, TRAIN

QUESTION = "how much is the hotel allowance in Europe?"


def _write_pairs(path: Path, pairs) -> Path:
    path.write_text("".join(json.dumps({"query": p.query, "positive": p.positive, "negatives": list(p.negatives)})
                            + "\n" for p in pairs))
    return path


def _settings(data_dir: Path, **models) -> Settings:
    s = Settings(data_dir=data_dir)
    return s.model_copy(update={
        "train": s.train.model_copy(update={"min_gain": 0.0, "epochs": 2, "batch_size": 20}),
        "models": s.models.model_copy(update=models)})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ray_session(None, storage=tmp_path_factory.mktemp("ray")) as session:
        yield session


@pytest.fixture(scope="module")
def world(tmp_path_factory, cluster, embedder):
    """A serving engine over the sample documents, the training files, and the first (promoted) run."""
    root = tmp_path_factory.mktemp("loop")
    settings = _settings(root / "data")
    engine = build_engine(settings, embedder=embedder)
    engine.ingest([p for p in SAMPLES.glob("*.md")])
    files = {"train": _write_pairs(root / "train.jsonl", TRAIN), "eval": _write_pairs(root / "eval.jsonl", HELD_OUT),
             "shuffled": _write_pairs(root / "shuffled.jsonl", SHUFFLED)}
    said: list[str] = []
    outcome = build_embedder_loop(settings, engine, feedback=False).run(files["train"], files["eval"],
                                                                        say=said.append)
    yield {"settings": settings, "engine": engine, "files": files, "outcome": outcome, "said": said,
           "registry": build_model_registry(settings)}
    engine.close()


def test_a_candidate_that_ranks_better_is_promoted_and_everything_is_in_mlflow(world):
    o, engine, registry = world["outcome"], world["engine"], world["registry"]
    assert o.promoted, o.reason
    assert o.version == "1" and o.served_as == CHAMPION
    assert o.metrics["candidate"]["mrr@10"] >= o.metrics["champion"]["mrr@10"]
    assert set(o.to_json()) >= {"run_id", "model", "version", "metrics", "promoted", "reason"}
    assert served_version(engine, EMBEDDER) == "1"
    assert registry.alias(EMBEDDER, CHAMPION) == "1"
    # Search answers from the new embedder, and answers say so.
    assert engine.ask(QUESTION).embedder == "1"
    # The MLflow run holds the parameters, the dataset digest, per-epoch losses and both models' metrics.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri)
    run = client.get_run(o.run_id)
    assert run.data.params["dataset_digest"] == o.dataset["digest"]
    assert run.data.params["eval_digest"] == o.dataset["eval_digest"]
    assert [m.step for m in client.get_metric_history(o.run_id, "loss")] == [1, 2]
    assert {"champion_hit_at_5", "candidate_mrr_at_10"} <= set(run.data.metrics)
    assert run.data.tags["imp.gate"] == "passed"
    assert (registry.materialize(EMBEDDER, "1") / "modules.json").is_file()


def test_rollback_serves_the_previous_index_again_and_embeds_only_what_changed(world, tmp_path):
    engine, registry = world["engine"], world["registry"]
    promote(engine, registry, EMBEDDER, "1")
    note = tmp_path / "late-note.md"
    note.write_text("# Late note\n\nThe parking garage closes at 22:00 during the winter months.\n")
    added = engine.ingest([note])[0].chunks  # while version 1 serves: the base index does not have it yet

    report = rollback(engine, registry, EMBEDDER)

    assert report.version == BASE and served_version(engine, EMBEDDER) == BASE
    assert report.embedded == added  # the kept base index needed only the new document
    assert engine.ask(QUESTION).embedder == BASE
    assert "parking garage" in engine.search("when does the parking garage close?", 1)[0].chunk.text
    assert registry.alias(EMBEDDER, CHAMPION) is None  # base is the bundled model: no alias


def test_a_restart_serves_the_champion(world, embedder):
    engine, registry, settings = world["engine"], world["registry"], world["settings"]
    promote(engine, registry, EMBEDDER, "1")
    engine.close()
    again = build_engine(settings, embedder=embedder)
    try:
        assert served_version(again, EMBEDDER) == "1"
        assert again.ask(QUESTION).embedder == "1"
    finally:
        again.close()


def test_a_candidate_trained_on_shuffled_pairs_is_refused_and_never_serves(world):
    engine, registry, settings = world["engine"], world["registry"], world["settings"]
    before = served_version(engine, EMBEDDER)
    # Wrong labels learnt in earnest: a higher learning rate and more epochs than the good run.
    wrong = settings.model_copy(update={"train": settings.train.model_copy(update={"learning_rate": 2e-4,
                                                                                  "epochs": 3})})
    o = build_embedder_loop(wrong, engine, feedback=False).run(world["files"]["shuffled"], world["files"]["eval"])
    assert not o.promoted and o.served_as is None
    assert o.metrics["candidate"]["mrr@10"] <= o.metrics["champion"]["mrr@10"]
    assert any(why in o.reason for why in ("MRR@10 dropped", "below", "no better"))
    assert served_version(engine, EMBEDDER) == before
    refused = registry.version(EMBEDDER, o.version)  # registered for the record, without an alias
    assert refused.aliases == () and refused.tags["gate"] == "refused"


def test_the_canary_routes_its_share_and_feedback_promotes_a_challenger_that_rates_no_worse(world, embedder):
    settings, registry = world["settings"], world["registry"]
    engine = build_engine(settings, embedder=embedder)  # IMP_MODELS__CANARY_SHARE=0
    canary = build_engine(settings.model_copy(update={"models": settings.models.model_copy(
        update={"canary_share": 1.0})}), embedder=embedder)
    try:
        promote(engine, registry, EMBEDDER, BASE)
        start_canary(engine, registry, EMBEDDER, "1")
        assert served_version(engine, EMBEDDER, CHALLENGER) == "1"
        assert registry.alias(EMBEDDER, CHALLENGER) == "1"
        assert settle_canary(engine, registry, EMBEDDER, min_ratings=1).decision == "wait"  # no ratings yet

        by_champion = engine.ask(QUESTION)
        deadline = time.monotonic() + 10  # the other engine notices the new challenger within seconds
        while (by_challenger := canary.ask(QUESTION)).embedder != "1" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert by_champion.embedder == BASE and by_challenger.embedder == "1"
        now = datetime.now(UTC)
        engine.record_feedback(Feedback(by_champion.answer_id, "U1", "C1", 1, now))
        engine.record_feedback(Feedback(by_challenger.answer_id, "U2", "C1", 1, now))
        assert engine.feedback_by_version(EMBEDDER)["1"] == (1, 0)

        v = settle_canary(engine, registry, EMBEDDER, min_ratings=1)

        assert v.decision == "promote", v.reason
        assert served_version(engine, EMBEDDER) == "1" and served_version(engine, EMBEDDER, CHALLENGER) is None
        assert registry.alias(EMBEDDER, CHAMPION) == "1" and registry.alias(EMBEDDER, CHALLENGER) is None
    finally:
        canary.close()
        engine.close()


def test_imp_models_lists_versions_aliases_runs_and_ratings(world, monkeypatch):
    from cli import cli

    monkeypatch.setenv("IMP_DATA_DIR", str(world["settings"].data_dir))
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["name"], r["version"]): r for r in json.loads(result.stdout)["models"]}
    first = rows[(EMBEDDER, "1")]
    assert CHAMPION in first["aliases"] and first["run_id"] and first["gate"] == "passed"
    assert first["up"] >= 1 and "candidate_hit_at_5" in first["metrics"]
    assert rows[(EMBEDDER, "2")]["gate"] == "refused"
    assert (EMBEDDER, BASE) in rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_registry_works_against_a_real_mlflow_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        model = tmp_path / "model"
        model.mkdir()
        (model / "weights.txt").write_text("pretend weights\n")
        registry = ModelRegistry(f"http://127.0.0.1:{port}", "imp-test", models_dir=tmp_path / "local")
        with registry.run("server-run", params={"epochs": 1}) as run:
            run.metrics({"loss": 0.25}, step=1)
            version = registry.register(EMBEDDER, run, model, tags={"gate": "passed"})
        registry.set_alias(EMBEDDER, CHAMPION, version)
        assert registry.alias(EMBEDDER, CHAMPION) == version
        assert [v.version for v in registry.versions(EMBEDDER)] == [version]
        shutil.rmtree(tmp_path / "local")  # another machine: the files come from the server
        got = registry.materialize(EMBEDDER, version)
        assert (got / "weights.txt").read_text() == "pretend weights\n"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
