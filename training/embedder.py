"""Fine-tune a sentence-transformers embedder on (query, passage) pairs with Ray Train, and search it with Ray Tune.

Each run is a ``TorchTrainer``: data-parallel workers (DDP, gloo on CPU) read their shard
of the pairs and minimise a contrastive loss (MultipleNegativesRankingLoss: in-batch
negatives plus each pair's hard negatives, cosine, scale 20) with AdamW and a linear
warm-up, the recipe in FINDINGS. Rank 0 scores the eval pairs after every epoch and
saves the final model as a sentence-transformers folder that ``SentenceTransformerEmbedder``
loads unchanged (same tokenizer, same window, normalised output); the driver copies it
to ``out``. ``batch_size`` is per worker: it is the contrastive batch, the negatives each
query is scored against. Models load from local folders only; on a multi-node cluster
``base`` and ``RayConfig.storage`` must be paths every node sees.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BackendError, InvalidRequest
from training.metrics import hit_at, mrr_at, pooled
from training.raycluster import RaySession, ray_session
from training.types import Pair

log = logging.getLogger(__name__)

SCALE = 20.0  # cosine similarities times 20 before the softmax (temperature 0.05), as sentence-transformers
EVAL_KEYS = ("hit@5", "mrr@10")
_TRIAL_MEMORY = 64 * 1024 * 1024  # bytes reserved for each Tune trial's driver process


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    learning_rate: float = 5e-5
    batch_size: int = 32  # per worker
    max_seq_length: int = 256  # training truncation; the saved model keeps the base model's window
    warmup: float = 0.1  # share of all steps spent warming the learning rate up
    seed: int = 0


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None: a local cluster for the run
    workers: int = 1
    cpus_per_worker: int = 0  # 0: the cluster's CPUs split among the workers
    use_gpu: bool = False
    storage: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "imp-ray-runs")


@dataclass
class TrainedModel:
    path: Path
    config: TrainConfig
    history: list[dict]  # per epoch: epoch, loss, seconds (+ hit@5, mrr@10 with eval pairs)
    seconds: float  # driver-side wall time of the Ray Train run (workers starting, loading, training, saving);
    # for tune_embedder, of the whole search
    peak_rss_mb: float  # highest peak resident memory of any training worker process (getrusage ru_maxrss)
    examples: int  # training pairs per epoch


@dataclass
class TuneResult:
    best: TrainedModel
    trials: list[dict]  # each: learning_rate, epochs, final metrics, error (None when it finished)


# --------------------------------------------------------------------------- driver side


def train_embedder(base: Path, pairs: Sequence[Pair], out: Path, config: TrainConfig, ray: RayConfig, *,
                   eval_pairs: Sequence[Pair] = (),
                   on_epoch: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train ``base`` on ``pairs`` as one Ray Train run; the model lands in ``out`` (a new or empty folder).

    The per-epoch rows come back as rank 0's return value: Train V2's ``Result`` keeps
    only the metrics reported with a checkpoint, and only the last epoch has one.
    """
    _check(base, pairs, out, config, ray, eval_pairs)
    with ray_session(ray.address, storage=ray.storage) as session:
        cpus = _cpus_per_worker(ray, session)
        name = _run_name("embedder")
        loop = {**_loop_config(base, pairs, eval_pairs, cpus), **asdict(config)}
        began = time.monotonic()
        try:
            result = _trainer(loop, ray, cpus, session.storage, name).fit()
        except Exception as e:
            raise BackendError(f"embedder training failed: {_reason(e)}") from e
        seconds = time.monotonic() - began
        history = list(result.return_value or [])
        if result.checkpoint is None or not history:
            raise BackendError("embedder training finished without a model (no checkpoint reported)")
        _copy_model(result.checkpoint, out)
        shutil.rmtree(session.storage / name, ignore_errors=True)
    rows = [_epoch_row(r) for r in history]
    log.info("embedder trained on %d pairs in %.0f s: %s", len(pairs), seconds, rows[-1])
    for row in rows:
        if on_epoch:
            on_epoch(dict(row))
    return TrainedModel(path=Path(out), config=config, history=rows, seconds=seconds,
                        peak_rss_mb=max(r["peak_rss_mb"] for r in history), examples=len(pairs))


def tune_embedder(base: Path, pairs: Sequence[Pair], out: Path, config: TrainConfig, ray: RayConfig, *,
                  trials: int, eval_pairs: Sequence[Pair]) -> TuneResult:
    """Search learning rate and epochs around ``config`` with Ray Tune; the best trial's model lands in ``out``.

    Each trial is a whole Ray Train run (Train V2: a Tune function that fits a TorchTrainer
    and forwards its reports with ``TuneReportCallback``). Trials are ranked by the last
    epoch's hit@5 on ``eval_pairs``.
    """
    if not eval_pairs:
        raise InvalidRequest("tuning needs eval pairs: trials are compared on their hit@5")
    if trials < 1:
        raise InvalidRequest(f"trials must be at least 1, not {trials}")
    _check(base, pairs, out, config, ray, eval_pairs)
    from ray import tune
    from ray.train import Checkpoint
    from ray.tune.search import BasicVariantGenerator

    with ray_session(ray.address, storage=ray.storage) as session:
        cpus = _cpus_per_worker(ray, session)
        name = _run_name("embedder-tune")
        fixed = {**_loop_config(base, pairs, eval_pairs, cpus), **asdict(config)}
        space = {"train_loop_config": {
            "learning_rate": tune.loguniform(config.learning_rate / 5, config.learning_rate * 2),
            "epochs": tune.randint(1, max(config.epochs, 2) + 1),  # upper bound exclusive
        }}
        concurrent = max(1, int(session.cpus // (cpus * ray.workers)))
        if ray.use_gpu:
            concurrent = max(1, min(concurrent, int(session.gpus // ray.workers)))
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, fixed=fixed, ray_config=ray, cpus=cpus,
                                 storage=str(session.storage / name)),
            # The trial only drives a Train run whose workers hold the CPUs; Tune wants some resource per
            # trial, and a CPU here would starve those workers on a small cluster.
            {"CPU": 0, "memory": _TRIAL_MEMORY},
        )
        tuner = tune.Tuner(
            trainable, param_space=space,
            # Tune's max_concurrent_trials is ignored with a generator; the generator limits it itself.
            tune_config=tune.TuneConfig(num_samples=trials, metric="hit@5", mode="max", search_alg=BasicVariantGenerator(
                max_concurrent=concurrent, random_state=config.seed)),
            run_config=tune.RunConfig(name=name, storage_path=str(session.storage), verbose=0),
        )
        began = time.monotonic()
        grid = tuner.fit()
        seconds = time.monotonic() - began
        summaries = [_trial_summary(r) for r in grid]
        finished = [r for r in grid if r.error is None and r.metrics and r.metrics.get("checkpoint_path")]
        if not finished:
            raise BackendError(f"every tuning trial failed: {summaries[0].get('error') if summaries else 'none ran'}")
        best = max(finished, key=lambda r: (r.metrics["hit@5"], r.metrics["mrr@10"], -r.metrics["loss"]))
        _copy_model(Checkpoint(best.metrics["checkpoint_path"]), out)
        shutil.rmtree(session.storage / name, ignore_errors=True)
    rows = best.metrics_dataframe.to_dict("records") if best.metrics_dataframe is not None else [best.metrics]
    chosen = best.config["train_loop_config"]
    tuned = TrainConfig(**{**asdict(config), "learning_rate": float(chosen["learning_rate"]),
                           "epochs": int(chosen["epochs"])})
    model = TrainedModel(path=Path(out), config=tuned, history=[_epoch_row(r) for r in rows], seconds=seconds,
                         peak_rss_mb=max(float(r.get("peak_rss_mb", 0.0)) for r in rows), examples=len(pairs))
    return TuneResult(best=model, trials=summaries)


def _tune_trial(space: dict, *, fixed: dict, ray_config: RayConfig, cpus: int, storage: str) -> None:
    """One Tune trial: a Ray Train run whose per-epoch reports Tune receives through the callback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    loop = {**fixed, **space["train_loop_config"]}
    name = f"train-{tune.get_context().get_trial_id()}"
    _trainer(loop, ray_config, cpus, Path(storage), name, callbacks=[TuneReportCallback()]).fit()


def _check(base: Path, pairs: Sequence[Pair], out: Path, config: TrainConfig, ray: RayConfig,
           eval_pairs: Sequence[Pair]) -> None:
    base = Path(base)
    if not (base / "modules.json").is_file():
        raise InvalidRequest(f"{base} is not a sentence-transformers model folder (no modules.json)")
    if not pairs:
        raise InvalidRequest("no training pairs")
    for label, group in (("training", pairs), ("eval", eval_pairs)):
        bad = sum(1 for p in group if not p.query.strip() or not p.positive.strip())
        if bad:
            raise InvalidRequest(f"{bad} {label} pair(s) have an empty query or positive passage")
    if config.batch_size < 2:
        raise InvalidRequest(f"batch size must be at least 2 (in-batch negatives), not {config.batch_size}")
    if config.epochs < 1 or not 0 < config.learning_rate < 1 or not 0 <= config.warmup < 1:
        raise InvalidRequest(f"bad training settings: {config}")
    if config.max_seq_length < 8:
        raise InvalidRequest(f"max_seq_length {config.max_seq_length} is too short to train on")
    if ray.workers < 1 or ray.cpus_per_worker < 0:
        raise InvalidRequest(f"bad Ray settings: {ray.workers} workers, {ray.cpus_per_worker} CPUs each")
    if len(pairs) < 2 * ray.workers:
        raise InvalidRequest(f"{len(pairs)} pairs are too few for {ray.workers} workers (2 per worker at least)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRequest(f"output folder {out} exists and is not empty")


def _cpus_per_worker(ray: RayConfig, session: RaySession) -> int:
    cpus = ray.cpus_per_worker or max(1, int(session.cpus // ray.workers))
    short = []
    if cpus * ray.workers > session.cpus:
        short.append(f"{ray.workers} workers x {cpus} CPUs need {cpus * ray.workers}; the cluster has {session.cpus:g}")
    if ray.use_gpu and ray.workers > session.gpus:
        short.append(f"{ray.workers} workers need a GPU each; the cluster has {session.gpus:g}")
    if short:
        if session.local:
            raise InvalidRequest("; ".join(short))  # nothing will ever free them: Ray would wait forever
        log.warning("%s; the run waits until the cluster grows", "; ".join(short))
    return cpus


def _run_name(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _loop_config(base: Path, pairs: Sequence[Pair], eval_pairs: Sequence[Pair], cpus: int) -> dict:
    import ray

    def plain(group: Sequence[Pair]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(p.query, p.positive, tuple(p.negatives)) for p in group]

    # In the object store once; every worker (and every trial) reads the same copy.
    return {"base": str(Path(base).resolve()), "pairs": ray.put(plain(pairs)),
            "eval_pairs": ray.put(plain(eval_pairs)), "threads": cpus}


def _trainer(loop: dict, ray_config: RayConfig, cpus: int, storage: Path, name: str, *,
             callbacks: list | None = None) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        _train_loop,
        train_loop_config=loop,
        scaling_config=ScalingConfig(num_workers=ray_config.workers, use_gpu=ray_config.use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=name, storage_path=str(storage), callbacks=callbacks or None,
                             failure_config=FailureConfig(max_failures=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )


def _copy_model(checkpoint: Any, out: Path) -> None:
    """Copy the reported checkpoint (on the run's storage) into ``out`` through a sibling, then rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:6]}"
    try:
        checkpoint.to_directory(str(staging))
        if out.exists():
            out.rmdir()  # checked empty before training
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _epoch_row(metrics: dict) -> dict:
    row = {"epoch": int(metrics["epoch"]), "loss": float(metrics["loss"]), "seconds": float(metrics["seconds"])}
    # Tune's frames hold NaN where a row lacks a metric.
    row.update({k: float(metrics[k]) for k in EVAL_KEYS if metrics.get(k) is not None and metrics[k] == metrics[k]})
    return row


def _trial_summary(result: Any) -> dict:
    chosen = (result.config or {}).get("train_loop_config", {})
    metrics = result.metrics or {}
    summary = {"learning_rate": chosen.get("learning_rate"), "epochs": chosen.get("epochs")}
    summary.update({k: metrics.get(k) for k in ("loss", "seconds", *EVAL_KEYS, "peak_rss_mb")})
    summary["error"] = _reason(result.error) if result.error else None
    return summary


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


# --------------------------------------------------------------------------- worker side


def _shard(n: int, world: int, rank: int, seed: int, epoch: int) -> list[int]:
    """This rank's pairs for an epoch: one seeded order, padded so every rank takes as many steps."""
    import numpy as np

    order = np.random.default_rng([seed, epoch]).permutation(n)
    per = -(-n // world)
    order = np.concatenate([order, order[: per * world - n]])
    return [int(i) for i in order[rank::world]]


def _batches(shard: list[int], size: int) -> list[list[int]]:
    batches = [shard[i : i + size] for i in range(0, len(shard), size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a lone pair has no in-batch negative
        batches.pop()
    return batches


def _contrastive_loss(q: Any, d: Any, texts: list[str], positives: list[str]) -> Any:
    """Cross-entropy of each query over all passages of the batch, its own positive the right answer.

    Candidates that are the very text of the query's positive (two queries sharing a
    passage) are masked rather than counted as negatives.
    """
    import torch
    import torch.nn.functional as F

    scores = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * SCALE
    same = torch.tensor([[t == p for t in texts] for p in positives], device=scores.device)
    labels = torch.arange(len(positives), device=scores.device)
    same[labels, labels] = False
    return F.cross_entropy(scores.masked_fill(same, float("-inf")), labels)


def _evaluate(model: Any, eval_pairs: list, batch_size: int) -> dict:
    """hit@5 and MRR@10 of each eval query's positive among every eval passage (positives and negatives)."""
    passages = list(dict.fromkeys(t for _, pos, negs in eval_pairs for t in (pos, *negs)))
    where = {t: i for i, t in enumerate(passages)}
    q = model.encode([query for query, _, _ in eval_pairs], batch_size=batch_size, convert_to_tensor=True,
                     normalize_embeddings=True, show_progress_bar=False)
    d = model.encode(passages, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                     show_progress_bar=False)
    top = (q @ d.T).topk(min(10, len(passages)), dim=1).indices.tolist()
    rows = []
    for (_, pos, _), ranked in zip(eval_pairs, top, strict=True):
        found = [i == where[pos] for i in ranked]
        rows.append({"hit@5": hit_at(found, 5), "mrr@10": mrr_at(found, 10)})
    return {k: v for k, v in pooled(rows).items() if k in EVAL_KEYS}


def _train_loop(cfg: dict) -> list[dict]:
    """What every Ray Train worker runs; rank 0 returns the per-epoch metrics."""
    import random
    import resource

    import numpy as np
    import ray
    import ray.train
    import ray.train.torch
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import get_linear_schedule_with_warmup

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Ray pins OMP threads to 1 in workers; use the CPUs this worker was given.
    torch.set_num_threads(max(1, int(cfg["threads"])))
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    pairs, eval_pairs = ray.get(cfg["pairs"]), ray.get(cfg["eval_pairs"])
    device = ray.train.torch.get_device()

    model = SentenceTransformer(cfg["base"], device=str(device), local_files_only=True)
    window = model.max_seq_length
    train_window = min(window, int(cfg["max_seq_length"]))

    class DualEncoder(torch.nn.Module):
        """Queries and passages through one forward call, so DDP sees each step as one pass."""

        def __init__(self, st: Any):
            super().__init__()
            self.st = st

        def forward(self, queries: dict, docs: dict) -> tuple[Any, Any]:
            return self.st(queries)["sentence_embedding"], self.st(docs)["sentence_embedding"]

    # Modules the pooled output does not use (BERT's pooler) get no gradient; DDP must know.
    dual = ray.train.torch.prepare_model(DualEncoder(model),
                                         parallel_strategy_kwargs={"find_unused_parameters": True})
    optimizer = torch.optim.AdamW(dual.parameters(), lr=float(cfg["learning_rate"]))
    epochs = int(cfg["epochs"])
    steps = len(_batches(_shard(len(pairs), world, rank, cfg["seed"], 0), int(cfg["batch_size"])))
    total = steps * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg["warmup"] * total), total)

    def features(texts: list[str]) -> dict:
        return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in model.preprocess(texts).items()}

    history: list[dict] = []
    for epoch in range(1, epochs + 1):
        began = time.monotonic()
        dual.train()
        model.max_seq_length = train_window
        loss_sum = torch.zeros(2, device=device)
        for batch in _batches(_shard(len(pairs), world, rank, cfg["seed"], epoch), int(cfg["batch_size"])):
            chosen = [pairs[i] for i in batch]
            positives = [pos for _, pos, _ in chosen]
            texts = positives + [neg for _, _, negs in chosen for neg in negs]
            q, d = dual(features([query for query, _, _ in chosen]), features(texts))
            loss = _contrastive_loss(q, d, texts, positives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += torch.stack([loss.detach(), torch.ones((), device=device)])
        metrics: dict[str, Any] = {"epoch": epoch, "examples": len(pairs), "steps": steps}
        model.max_seq_length = window  # evaluated and saved as it will serve
        if rank == 0 and eval_pairs:
            model.eval()
            metrics.update(_evaluate(model, eval_pairs, int(cfg["batch_size"])))
        # ru_maxrss: this worker process's peak resident memory so far, in KiB on Linux.
        rss = torch.tensor(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, device=device)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(loss_sum)
            dist.all_reduce(rss, op=dist.ReduceOp.MAX)
        metrics.update(loss=float(loss_sum[0] / loss_sum[1].clamp(min=1)), peak_rss_mb=round(float(rss), 1),
                       seconds=round(time.monotonic() - began, 3))
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0 and epoch == epochs:
                model.save(folder, create_model_card=False)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)
        history.append(metrics)
    return history
