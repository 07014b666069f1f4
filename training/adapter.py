"""LoRA training of the answer adapter: SFT on cited reference answers, then KTO on 👍/👎 answers.

The base model is a local folder, loaded the way ``core/llm/transformers_backend.py``
serves it (4-bit NF4 with bitsandbytes on CUDA: QLoRA); the output is a peft adapter
folder that the backend applies unchanged (``IMP_LLM__ADAPTER``). Prompts are
production's ``answer_messages``, rendered by the tokenizer's chat template with
the generation prompt, as serving renders them; sources are fitted into
``max_length`` by production's ``pack_sources``.

KTO needs both desirable and undesirable answers. With only one kind the KTO
stage is skipped and ``TrainedAdapter.notes`` says so; 👍-only answers then join
the SFT examples (they are answers people approved of).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.answer.prompts import Packed, answer_messages
from core.errors import BackendError, InvalidRequest
from training.adapter_data import AnswerExample, RatedExample, cited_numbers, fit
from training.embedder import RayConfig

log = logging.getLogger(__name__)

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
Progress = Callable[[str, int, int], None]  # (stage, step, steps)


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: int = 1
    batch_size: int = 4  # KTO needs at least 2: its KL term pairs each prompt with another example's answer
    max_length: int = 1024  # tokens of prompt + answer; sources are packed to fit
    load_in_4bit: bool | None = None  # None: 4-bit (QLoRA) when CUDA is available
    kto_learning_rate: float = 1e-5
    kto_beta: float = 0.1
    max_steps: int = -1  # per stage; -1: whole epochs
    gradient_accumulation: int = 1
    target_modules: tuple[str, ...] = TARGET_MODULES
    seed: int = 0

    def check(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise InvalidRequest("LoRA needs r >= 1, alpha >= 1 and 0 <= dropout < 1")
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 64:
            raise InvalidRequest("training needs epochs >= 1, batch_size >= 1 and max_length >= 64")
        if self.learning_rate <= 0 or self.kto_learning_rate <= 0:
            raise InvalidRequest("learning rates must be positive")


@dataclass(frozen=True, slots=True)
class TrainedAdapter:
    path: Path
    history: list[dict]  # one row per stage and epoch: {"stage", "epoch", "loss", "steps", ...}
    seconds: float
    examples: dict[str, int]  # {"sft", "kto_desirable", "kto_undesirable", "skipped"}
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- prompts


def _counter(tok: Any) -> Callable[[str], int]:
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def fit_answer(example: AnswerExample | RatedExample, max_length: int, count: Callable[[str], int]) -> Packed | None:
    """The example's sources packed into ``max_length`` beside its answer.

    None when a source the answer cites did not fit: the example would teach a
    citation of a source the model was never shown.
    """
    kept = fit(example.question, example.passages, max_length - count(example.answer), count)
    if not kept.hits or any(n > len(kept.hits) for n in cited_numbers(example.answer)):
        return None
    return kept


def chat_row(tok: Any, question: str, pack: Packed, answer: str) -> dict[str, Any]:
    """A prompt/completion row, rendered by TRL as serving renders it.

    With a chat template, TRL applies it with ``add_generation_prompt=True`` like
    ``TransformersGenerator._inputs``; without one, the prompt is the plain
    transcript that the backend writes for a base model.
    """
    msgs = answer_messages(question, pack)
    if getattr(tok, "chat_template", None):
        return {"prompt": [{"role": m.role, "content": m.content} for m in msgs],
                "completion": [{"role": "assistant", "content": answer}]}
    return {"prompt": "".join(f"{m.role}: {m.content}\n" for m in msgs) + "assistant:", "completion": " " + answer}


def boundary_differs(tok: Any, row: dict[str, Any]) -> bool:
    """Whether the prompt's tokens change when an answer follows it (a template ending mid-token, "...> ").

    TRL trains on the tokens of prompt + answer; serving feeds the prompt's own tokens
    and generates from there. Where they differ, the adapter learns a context it is never served.
    """
    if isinstance(row["prompt"], list):
        alone = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
        whole = tok.apply_chat_template(row["prompt"] + row["completion"], return_dict=True)["input_ids"]
    else:
        alone = tok(row["prompt"])["input_ids"]
        whole = tok(row["prompt"] + row["completion"])["input_ids"]
    return list(whole[:len(alone)]) != list(alone)


def rows(tok: Any, sft: Sequence[AnswerExample], kto: Sequence[RatedExample],
         max_length: int) -> tuple[list[dict], list[dict], int]:
    """SFT rows, KTO rows (👍 and 👎 interleaved so each batch holds both) and how many examples did not fit."""
    count = _counter(tok)
    skipped = 0
    sft_rows = []
    for e in sft:
        pack = fit_answer(e, max_length, count)
        if pack is None:
            skipped += 1
            continue
        sft_rows.append(chat_row(tok, e.question, pack, e.answer))
    good, bad = [], []
    for e in kto:
        pack = fit_answer(e, max_length, count)
        if pack is None:
            skipped += 1
            continue
        (good if e.label else bad).append(chat_row(tok, e.question, pack, e.answer) | {"label": e.label})
    kto_rows = [r for pair in zip(good, bad, strict=False) for r in pair]
    longer = good if len(good) > len(bad) else bad
    kto_rows += longer[min(len(good), len(bad)):]
    return sft_rows, kto_rows, skipped


# ---------------------------------------------------------------- model


def load_model(base: Path, config: AdapterConfig) -> tuple[Any, Any, bool]:
    """Tokenizer, LoRA-wrapped model, and whether it is 4-bit; loaded as the serving backend loads them."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    four_bit = cuda if config.load_in_4bit is None else config.load_in_4bit
    if four_bit and not cuda:
        raise BackendError("4-bit QLoRA training needs a CUDA GPU; none is available")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if four_bit:
        from core.llm.transformers_backend import nf4_config

        kwargs["quantization_config"] = nf4_config()
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # a Ray worker's own GPU
    elif cuda:
        kwargs["dtype"] = torch.bfloat16
    try:
        tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except Exception as e:
        raise BackendError(f"cannot load the base model from {base}: {e}") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    return tok, get_peft_model(model, lora), four_bit


def _common_args(config: AdapterConfig, work: Path, four_bit: bool, lr: float, batch: int) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"output_dir": str(work), "num_train_epochs": config.epochs, "max_steps": config.max_steps,
            "per_device_train_batch_size": batch, "gradient_accumulation_steps": config.gradient_accumulation,
            "learning_rate": lr, "logging_steps": 1, "save_strategy": "no", "report_to": [], "seed": config.seed,
            "bf16": cuda, "use_cpu": not cuda, "activation_checkpointing": four_bit,
            "max_length": config.max_length, "dataloader_num_workers": 0, "disable_tqdm": True}


def _per_epoch(stage: str, log_history: list[dict]) -> list[dict]:
    """Mean of each logged step metric per epoch."""
    groups: dict[int, list[dict]] = {}
    for entry in log_history:
        if "loss" in entry and "epoch" in entry:
            groups.setdefault(max(1, math.ceil(entry["epoch"] - 1e-9)), []).append(entry)
    out = []
    for epoch, entries in sorted(groups.items()):
        row: dict[str, Any] = {"stage": stage, "epoch": epoch, "steps": len(entries)}
        for key in ("loss", "kl", "rewards/chosen", "rewards/rejected", "rewards/margins"):
            values = [e[key] for e in entries if isinstance(e.get(key), int | float)]
            if values:
                row[key] = round(sum(values) / len(values), 6)
        out.append(row)
    return out


def _run(trainer: Any, stage: str, progress: Progress | None) -> list[dict]:
    from transformers import PrinterCallback, TrainerCallback

    class Report(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress:
                progress(stage, state.global_step, state.max_steps)

    trainer.remove_callback(PrinterCallback)  # it prints every log line; the caller shows progress its own way
    trainer.add_callback(Report())
    trainer.train()
    return _per_epoch(stage, trainer.state.log_history)


def train_stages(base: Path, sft_rows: list[dict], kto_rows: list[dict], out: Path, config: AdapterConfig,
                 work: Path, *, save: bool = True, progress: Progress | None = None) -> list[dict]:
    """SFT then KTO on one model; saves the adapter to ``out``. Plain arguments, so a Ray worker can run it."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    tok, model, four_bit = load_model(base, config)
    history: list[dict] = []
    if sft_rows:
        args = SFTConfig(**_common_args(config, work / "sft", four_bit, config.learning_rate, config.batch_size),
                         completion_only_loss=True, packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(sft_rows), processing_class=tok)
        history += _run(trainer, "sft", progress)
        model = trainer.model
    if kto_rows:
        batch = max(2, config.batch_size)
        args = KTOConfig(**_common_args(config, work / "kto", four_bit, config.kto_learning_rate, batch),
                         beta=config.kto_beta)
        # The reference policy is the adapter as SFT left it: TRL copies it into a frozen "ref" adapter.
        trainer = KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(kto_rows), processing_class=tok)
        history += _run(trainer, "kto", progress)
        model = trainer.model
    if save:
        model.save_pretrained(str(out), selected_adapters=["default"])
    return history


# ---------------------------------------------------------------- entry point


def train_adapter(base: Path, sft: Sequence[AnswerExample], kto: Sequence[RatedExample], out: Path,
                  config: AdapterConfig | None = None, *, ray: RayConfig | None = None,
                  progress: Progress | None = None) -> TrainedAdapter:
    """Train a LoRA adapter for the model folder ``base`` and write it to ``out`` (a new or empty folder).

    ``ray`` None trains in this process; a ``RayConfig`` runs the same stages as one
    Ray Train ``TorchTrainer`` run (data-parallel workers; on a multi-node cluster
    ``base`` and ``RayConfig.storage`` must be paths every node sees). ``progress``
    hears (stage, step, steps) after each in-process optimiser step.
    """
    config = config or AdapterConfig()
    config.check()
    base, out = Path(base), Path(out)
    if not (base / "config.json").is_file():
        raise InvalidRequest(f"not a model folder (no config.json): {base}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRequest(f"the adapter folder must be new or empty: {out}")
    notes: list[str] = []
    good = [e for e in kto if e.label]
    bad = [e for e in kto if not e.label]
    sft = list(sft)
    if kto and not (good and bad):
        notes.append(f"KTO needs both 👍 and 👎 answers; got {len(good)} 👍 and {len(bad)} 👎, so the KTO stage "
                     "was skipped" + (" and the 👍 answers were added to SFT" if good else ""))
        sft += [AnswerExample(e.question, e.passages, e.answer) for e in good]
        kto = []
    if not sft and not kto:
        raise InvalidRequest("no training examples: give reference answers (SFT) or rated answers (KTO)")

    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    except Exception as e:
        raise BackendError(f"cannot load the tokenizer of {base}: {e}") from e
    sft_rows, kto_rows, skipped = rows(tok, sft, kto, config.max_length)
    if skipped:
        notes.append(f"{skipped} example(s) left out: a source their answer cites did not fit "
                     f"max_length={config.max_length}")
    differ = sum(boundary_differs(tok, row) for row in sft_rows + kto_rows)
    if differ:
        notes.append(f"in {differ} example(s) the prompt's last tokens change when the answer follows (the chat "
                     "template's generation prompt does not end on a token boundary): training sees a context "
                     "serving never gives, so the adapter may learn little")
        log.warning(notes[-1])
    if kto_rows and len({r["label"] for r in kto_rows}) < 2:
        notes.append("KTO stage skipped: after fitting to max_length only one kind of rating was left")
        kto_rows = []
    if not sft_rows and not kto_rows:
        raise InvalidRequest(f"no example fits max_length={config.max_length} tokens")

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="imp-adapter-") as tmp:
        if ray is None:
            history = train_stages(base, sft_rows, kto_rows, partial, config, Path(tmp), progress=progress)
        else:
            history = _train_on_ray(base, sft_rows, kto_rows, partial, config, ray)
    counts = {"sft": len(sft_rows), "kto_desirable": sum(r["label"] for r in kto_rows),
              "kto_undesirable": sum(not r["label"] for r in kto_rows), "skipped": skipped}
    (partial / "imp_training.json").write_text(json.dumps(
        {"config": asdict(config), "examples": counts, "history": history, "notes": notes}, indent=2))
    if out.exists():
        out.rmdir()
    partial.rename(out)  # a half-written adapter is never mistaken for a finished one
    seconds = round(time.perf_counter() - started, 2)
    log.info("adapter trained in %.1f s on %s examples: %s", seconds, counts, out)
    return TrainedAdapter(out, history, seconds, counts, notes)


# ---------------------------------------------------------------- Ray Train


def _train_on_ray(base: Path, sft_rows: list[dict], kto_rows: list[dict], out: Path, config: AdapterConfig,
                  ray_config: RayConfig) -> list[dict]:
    """The stages as one TorchTrainer run; rank 0 reports the adapter as a checkpoint, copied to ``out``."""
    import ray
    from ray.train import (
        Checkpoint,
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    from training.raycluster import ray_session

    if ray_config.workers < 1 or ray_config.cpus_per_worker < 0:
        raise InvalidRequest(f"bad Ray settings: {ray_config.workers} workers, {ray_config.cpus_per_worker} CPUs")
    with ray_session(ray_config.address, storage=ray_config.storage) as session:
        cpus = ray_config.cpus_per_worker or max(1, int(session.cpus // ray_config.workers))
        if session.local and cpus * ray_config.workers > session.cpus:
            raise InvalidRequest(f"{ray_config.workers} workers x {cpus} CPUs do not fit this machine's "
                                 f"{session.cpus:g} CPUs")
        name = f"adapter-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        loop = {"base": str(base.resolve()), "sft": ray.put(sft_rows), "kto": ray.put(kto_rows),
                "config": asdict(config), "threads": cpus}
        trainer = TorchTrainer(
            _ray_loop, train_loop_config=loop,
            scaling_config=ScalingConfig(num_workers=ray_config.workers, use_gpu=ray_config.use_gpu,
                                         resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(name=name, storage_path=str(session.storage),
                                 failure_config=FailureConfig(max_failures=0),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1)))
        try:
            result = trainer.fit()
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise BackendError(f"adapter training failed on Ray: {lines[-1] if lines else type(e).__name__}") from e
        if result.checkpoint is None:
            raise BackendError("adapter training on Ray finished without an adapter (no checkpoint reported)")
        Checkpoint(result.checkpoint.path).to_directory(str(out))
        history = json.loads((out / _HISTORY).read_text())
        (out / _HISTORY).unlink()
        shutil.rmtree(session.storage / name, ignore_errors=True)
    return history


_HISTORY = "history.json"


def _ray_loop(cfg: dict) -> None:
    """What every Ray Train worker runs: the same stages; Trainer joins the process group Ray set up."""
    import ray
    import ray.train
    import torch

    torch.set_num_threads(max(1, int(cfg["threads"])))  # Ray pins workers to one thread otherwise
    config = AdapterConfig(**{**cfg["config"], "target_modules": tuple(cfg["config"]["target_modules"])})
    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory(prefix="imp-adapter-") as tmp:
        adapter = Path(tmp) / "adapter"
        history = train_stages(Path(cfg["base"]), ray.get(cfg["sft"]), ray.get(cfg["kto"]), adapter, config,
                               Path(tmp) / "work", save=rank == 0)
        checkpoint = None
        if rank == 0:
            (adapter / _HISTORY).write_text(json.dumps(history))
            checkpoint = ray.train.Checkpoint.from_directory(str(adapter))
        ray.train.report({"stages": len(history)}, checkpoint=checkpoint)
