"""One turn of the learning loop for the answer adapter: examples, LoRA training, the gate, registration.

`imp train adapter` calls ``AdapterLoop.run``. Supervised examples come from the data
file, 👍/👎 ratings become KTO examples (the answer texts read from the answer log);
the champion adapter (or the bare base model) and the candidate are scored on the same
held-out examples with the production generator. A candidate is registered as a version
of ``imp-answer-adapter`` either way, and promoted only when every answer cites valid
sources and ROUGE-L does not drop; the service applies it at its next start.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from training.loop import TrainOutcome
from training.registry import ADAPTER, BASE, CHAMPION, ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterLoopConfig:
    held_out: float = 0.1
    seed: int = 0
    feedback: bool = True
    max_eval: int = 64  # held-out examples generated per model (generation is the slow part)
    max_new_tokens: int = 256  # as serving generates (IMP_LLM__MAX_NEW_TOKENS)


class AdapterLoop:
    def __init__(self, engine: Any, registry: ModelRegistry, *, base: Path | None, configured_adapter: Path | None,
                 device: str, ray: Any, config: AdapterLoopConfig, workdir: Path, train_config: Any = None):
        self._engine = engine
        self._registry = registry
        self._base = base
        self._configured = configured_adapter
        self._device = device
        self._ray = ray
        self._config = config
        self._workdir = workdir
        self._train_config = train_config

    def _champion(self) -> tuple[str, Path | None]:
        for m in self._engine.served_models():
            if m.name == ADAPTER and m.slot == CHAMPION:
                return m.version, Path(m.path) if m.path else None
        return BASE, self._configured

    def _feedback(self) -> tuple:
        from training.adapter_data import rated_examples

        if not self._config.feedback:
            return ()
        rated = self._engine.rated_answers()
        texts = {}
        for r in rated:
            try:
                texts[r.answer_id] = self._engine.answer(r.answer_id).text
            except Exception:  # an answer gone since: its rating says nothing now
                continue
        return rated_examples([r for r in rated if r.answer_id in texts], texts)

    def run(self, data: Path | None, eval_path: Path | None = None, *,
            say: Callable[[str], None] | None = None) -> TrainOutcome:
        from training.adapter import train_adapter
        from training.adapter_data import read_examples
        from training.adapter_eval import adapter_gate, evaluate_adapter

        say = say or (lambda text: log.info("%s", text))
        if self._base is None or not Path(self._base).is_dir():
            raise InvalidRequest("the answer adapter trains on a transformers model folder: set IMP_LLM__PATH to one "
                                 "(a .gguf file or the bundled model cannot be trained)")
        sft, kto, source = [], list(self._feedback()), "feedback"
        if data is not None:
            got = read_examples(data)
            sft, kto, source = list(got.sft), kto + list(got.kto), f"{got.source} + feedback"
        if not sft and not kto:
            raise InvalidRequest("nothing to train on: give --data, or wait for rated answers")
        if eval_path is not None:
            evaluation = list(read_examples(eval_path).sft)
        else:
            rng = random.Random(self._config.seed)
            rng.shuffle(sft)
            n = max(1, round(len(sft) * self._config.held_out)) if len(sft) > 1 else 0
            evaluation, sft = sft[:n], sft[n:]
        evaluation = evaluation[: self._config.max_eval]
        if not evaluation:
            raise InvalidRequest("no evaluation examples: give --eval, or more supervised examples")
        digest = _digest(sft, kto)
        champion_version, champion_path = self._champion()
        say(f"data: {len(sft)} supervised and {len(kto)} rated examples ({source}); evaluation: {len(evaluation)}")
        timings: dict[str, float] = {}
        params = {"base_model": str(self._base), "base_version": champion_version, "sft": len(sft), "kto": len(kto),
                  "dataset_digest": digest, "eval_examples": len(evaluation)}
        with self._registry.run(f"adapter-{time.strftime('%Y%m%d-%H%M%S')}", params=params,
                                tags={"imp.model": ADAPTER, "imp.dataset_digest": digest}) as run:
            out = Path(tempfile.mkdtemp(prefix="adapter-", dir=self._workdir)) / "adapter"
            try:
                t0 = time.perf_counter()
                say("training: LoRA (r=8, alpha=16), supervised then KTO on the ratings")
                trained = train_adapter(self._base, sft, kto, out, self._train_config, ray=self._ray)
                timings["train_s"] = round(time.perf_counter() - t0, 1)
                for i, row in enumerate(trained.history, 1):
                    run.metrics({f"{row.get('stage', 'train')}_loss": row.get("loss")}, step=i)
                t0 = time.perf_counter()
                say("evaluating the champion and the candidate on the same examples")
                tokens = self._config.max_new_tokens
                ours = evaluate_adapter(self._base, champion_path, evaluation, device=self._device,
                                        max_new_tokens=tokens)
                theirs = evaluate_adapter(self._base, trained.path, evaluation, device=self._device,
                                          max_new_tokens=tokens)
                timings["eval_s"] = round(time.perf_counter() - t0, 1)
                keep = ("citation_validity", "rouge_l", "abstention", "examples")
                ours, theirs = ({k: d[k] for k in keep if k in d} for d in (ours, theirs))
                run.metrics({f"champion_{k}": v for k, v in ours.items()})
                run.metrics({f"candidate_{k}": v for k, v in theirs.items()})
                promoted, reason = adapter_gate(ours, theirs)
                run.tags({"imp.gate": "passed" if promoted else "refused", "imp.gate_reason": reason})
                run.text(json.dumps(trained.notes), "notes.json")
                version = self._registry.register(ADAPTER, run, trained.path, description=reason,
                                                  tags={"gate": "passed" if promoted else "refused",
                                                        "dataset_digest": digest})
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
        outcome = TrainOutcome(run_id=run.run_id, model=ADAPTER, version=version,
                               metrics={"champion": ours, "candidate": theirs}, promoted=promoted, reason=reason,
                               dataset={"digest": digest, "source": source, "sft": len(sft), "kto": len(kto)},
                               seconds=timings, training={"seconds": trained.seconds, "history": trained.history,
                                                          "examples": trained.examples, "notes": trained.notes})
        say(("gate passed: " if promoted else "gate refused: ") + reason)
        if promoted:
            from training.promotion import promote

            promote(self._engine, self._registry, ADAPTER, version)
            outcome.served_as = CHAMPION
            say(f"adapter version {version} is champion; the service loads it at its next start")
        return outcome


def _digest(sft: list, kto: list) -> str:
    import hashlib

    h = hashlib.sha256()
    for e in sft:
        h.update(json.dumps([e.question, [p.text for p in e.passages], e.answer]).encode())
    for e in kto:
        h.update(json.dumps([e.question, [p.text for p in e.passages], e.answer, e.label]).encode())
    return h.hexdigest()
