"""One turn of the learning loop for the embedder: data, training, the gate, registration, serving.

``EmbedderLoop.run`` is what `imp train embedder` and the scheduled retraining
call. Every step is recorded in one MLflow run: parameters, the dataset's digest,
per-epoch metrics, champion and candidate metrics on the same evaluation set,
the gate's decision and the model files. A candidate that passes the gate
becomes champion (or challenger, when a canary share is set); one that fails is
registered for the record but never serves.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from training.gate import EngineFactory, decide, evaluate
from training.registry import BASE, CHALLENGER, CHAMPION, EMBEDDER, ModelRegistry
from training.types import Dataset, EvalSet

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass(frozen=True)
class LoopConfig:
    min_gain: float = 0.01
    held_out: float = 0.1
    epochs: int = 1
    learning_rate: float = 5e-5
    batch_size: int = 32
    hard_negatives: int = 1
    max_positives: int | None = 1
    seed: int = 0
    trials: int = 1
    canary: bool = False  # a passing candidate becomes challenger instead of champion
    chunk_max_tokens: int | None = None  # production chunking (IMP_CHUNKING__*): pairs are cut the same way
    chunk_overlap: float = 0.15
    feedback: bool = True  # rated answers join the data (and the held-back evaluation slice)


@dataclass
class TrainOutcome:
    run_id: str
    model: str
    version: str | None
    metrics: dict[str, dict[str, float]]
    promoted: bool
    reason: str
    served_as: str | None = None
    dataset: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    switch: dict | None = None
    training: dict = field(default_factory=dict)  # seconds, peak memory of a worker, examples, per-epoch history

    def to_json(self) -> dict:
        return asdict(self)


class EmbedderLoop:
    """Trains a candidate from the serving champion and promotes it only if it is better."""

    def __init__(self, engine: Any, registry: ModelRegistry, make_engine: EngineFactory, *,
                 make_embedder: Callable[[Path | None], Any], base_path: Path, ray: Any, config: LoopConfig,
                 workdir: Path):
        """``make_embedder(None)`` is the configured base model; ``base_path`` its folder."""
        self._engine = engine
        self._registry = registry
        self._make_engine = make_engine
        self._make_embedder = make_embedder
        self._base_path = base_path
        self._ray = ray
        self._config = config
        self._workdir = workdir
        self._base_embedder: Any = None

    def _base(self) -> Any:
        """The configured base model, loaded once per loop (its tokenizer cuts the data, it may be the champion)."""
        if self._base_embedder is None:
            self._base_embedder = self._make_embedder(None)
        return self._base_embedder

    def _champion(self) -> tuple[str, Path]:
        from training.promotion import served_version

        version = served_version(self._engine, EMBEDDER) or BASE
        if version == BASE:
            return BASE, self._base_path
        return version, self._registry.materialize(EMBEDDER, version)

    def dataset(self, data: Path | None, eval_path: Path | None) -> tuple[Dataset, EvalSet]:
        """The training pairs (corpus and feedback) and the evaluation set both models are scored on."""
        from training.data import load_training_data, read_eval_set

        rated = self._engine.rated_answers() if self._config.feedback else []
        if data is None and not rated:
            raise InvalidRequest("nothing to train on: give --data, or wait for rated answers")
        base = self._base()
        window = base.max_tokens
        dataset = load_training_data(
            data, base.tokenizer(), min(window, self._config.chunk_max_tokens or window),
            overlap=self._config.chunk_overlap,
            hard_negatives=self._config.hard_negatives, held_out=0.0 if eval_path else self._config.held_out,
            seed=self._config.seed, feedback=rated, max_positives=self._config.max_positives)
        evalset = read_eval_set(eval_path) if eval_path else dataset.eval
        if evalset is None or not evalset.queries:
            raise InvalidRequest("no evaluation set: give --eval, or more data to hold a slice back from")
        if not dataset.pairs:
            raise InvalidRequest("the data gave no training pairs")
        return dataset, evalset

    def run(self, data: Path | None, eval_path: Path | None = None, *, say: Say | None = None) -> TrainOutcome:
        say = say or (lambda text: log.info("%s", text))
        from training.embedder import TrainConfig, train_embedder, tune_embedder
        from training.data import pairs_from_eval

        cfg = self._config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        dataset, evalset = self.dataset(data, eval_path)
        timings["data_s"] = round(time.perf_counter() - t0, 1)
        champion_version, champion_path = self._champion()
        say(f"data: {len(dataset.pairs)} pairs from {dataset.source} (digest {dataset.digest[:12]}); "
            f"evaluation: {len(evalset.queries)} queries over {len(evalset.documents)} documents")
        train_cfg = TrainConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                                seed=cfg.seed)
        params = {"base_version": champion_version, "epochs": cfg.epochs, "learning_rate": cfg.learning_rate,
                  "batch_size": cfg.batch_size, "hard_negatives": cfg.hard_negatives, "trials": cfg.trials,
                  "seed": cfg.seed, "min_gain": cfg.min_gain, "pairs": len(dataset.pairs),
                  "dataset_digest": dataset.digest, "dataset_source": dataset.source,
                  "eval_digest": evalset.digest, "eval_queries": len(evalset.queries),
                  "ray_workers": getattr(self._ray, "workers", None)}
        with self._registry.run(f"embedder-{time.strftime('%Y%m%d-%H%M%S')}", params=params,
                                tags={"imp.model": EMBEDDER, "imp.dataset_digest": dataset.digest}) as run:
            run.text(json.dumps(dataset.stats, indent=1, default=str), "dataset_stats.json")
            out = Path(tempfile.mkdtemp(prefix="candidate-", dir=self._workdir))
            try:
                t0 = time.perf_counter()
                if cfg.trials > 1:
                    say(f"training: Ray Tune search over {cfg.trials} trials")
                    tuned = tune_embedder(champion_path, dataset.pairs, out, train_cfg, self._ray, trials=cfg.trials,
                                          eval_pairs=pairs_from_eval(evalset))
                    trained = tuned.best
                    for i, trial in enumerate(tuned.trials):
                        run.metrics({f"trial_{k}": v for k, v in trial.items() if isinstance(v, int | float)}, step=i)
                    run.params({"best_learning_rate": trained.config.learning_rate,
                                "best_epochs": trained.config.epochs})
                else:
                    say(f"training: {cfg.epochs} epoch(s) on Ray Train")
                    trained = train_embedder(champion_path, dataset.pairs, out, train_cfg, self._ray,
                                             on_epoch=lambda row: run.metrics(row, step=int(row.get("epoch", 0))))
                timings["train_s"] = round(time.perf_counter() - t0, 1)
                run.metrics({"train_seconds": trained.seconds, "train_peak_rss_mb": trained.peak_rss_mb})

                t0 = time.perf_counter()
                say("evaluating the champion and the candidate on the same evaluation set")
                champion = self._base() if champion_version == BASE else self._make_embedder(champion_path)
                ours = evaluate(evalset, champion,
                                self._make_engine, self._workdir / "eval-champion")
                theirs = evaluate(evalset, self._make_embedder(trained.path), self._make_engine,
                                  self._workdir / "eval-candidate")
                timings["eval_s"] = round(time.perf_counter() - t0, 1)
                run.metrics({f"champion_{k}": v for k, v in ours.items()})
                run.metrics({f"candidate_{k}": v for k, v in theirs.items()})
                promoted, reason = decide(ours, theirs, min_gain=cfg.min_gain)
                run.tags({"imp.gate": "passed" if promoted else "refused", "imp.gate_reason": reason})
                version = self._registry.register(
                    EMBEDDER, run, trained.path, description=reason,
                    tags={"gate": "passed" if promoted else "refused", "dataset_digest": dataset.digest,
                          "base_version": champion_version, **{f"hit@5_{k}": v["hit@5"] for k, v in
                                                              (("champion", ours), ("candidate", theirs))}})
            finally:
                shutil.rmtree(out, ignore_errors=True)
        outcome = TrainOutcome(run_id=run.run_id, model=EMBEDDER, version=version,
                               metrics={"champion": ours, "candidate": theirs}, promoted=promoted, reason=reason,
                               dataset={"digest": dataset.digest, "source": dataset.source,
                                        "pairs": len(dataset.pairs), "eval_digest": evalset.digest},
                               seconds=timings,
                               training={"seconds": trained.seconds, "peak_rss_mb": trained.peak_rss_mb,
                                         "examples": trained.examples, "history": trained.history,
                                         "epochs": trained.config.epochs,
                                         "learning_rate": trained.config.learning_rate})
        say(("gate passed: " if promoted else "gate refused: ") + reason)
        if promoted:
            outcome.served_as = self.serve(version, say=say, outcome=outcome)
        return outcome

    def serve(self, version: str, *, say: Say, outcome: TrainOutcome) -> str:
        from training.promotion import promote, start_canary

        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if time.perf_counter() - last[0] > 5 or done == total:
                last[0] = time.perf_counter()
                say(f"re-indexing for version {version}: {done}/{total} chunks")

        if self._config.canary:
            report = start_canary(self._engine, self._registry, EMBEDDER, version, progress=progress)
            slot = CHALLENGER
        else:
            report = promote(self._engine, self._registry, EMBEDDER, version, progress=progress)
            slot = CHAMPION
        outcome.seconds["switch_s"] = round(time.perf_counter() - t0, 1)
        outcome.switch = asdict(report) if hasattr(report, "__dataclass_fields__") else None
        say(f"version {version} serves as {slot}")
        return slot
