"""ReDoS and quadratic text scans: each pattern that issue 11 item 2 rewrote, attacked before and after.

Every attack is the worst input found for one pattern (or the parser behind it), sent
through the public function a user's file or words reach: ``load_file`` for documents,
the minutes rules (``find_actions`` and ``find_decisions``) for a transcript,
``validate`` for a model's draft, ``parse_reply`` for an LLM minutes reply. A few patterns
are reached only through sentences the rules cut to 400 characters; those rows call the
pattern itself, to show that it no longer backtracks at any length ("pattern" in the
"through" column).

Each run is a child process, stopped after ``--limit`` seconds, so a catastrophic run
cannot stall the benchmark; its seconds are those of the call alone (the input is built
first) and its peak RSS is the child's own. "Before" is ``git archive --ref`` (default
HEAD) unpacked in a temporary folder, "after" the working tree::

    .venv/bin/python bench/attacks_regex.py                  # every attack, HEAD vs working tree
    .venv/bin/python bench/attacks_regex.py --only vtt-voice,text-5mb --limit 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------- the attacks (run in the child)

def _file(tmp: Path, name: str, data: str | bytes) -> Path:
    tmp.mkdir(exist_ok=True)
    path = tmp / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _load(tmp: Path, name: str, data: str | bytes):
    from core.ingest.loaders import load_file

    path = _file(tmp, name, data)
    return lambda: load_file(path)


def _minutes(reply: str):
    """A request, and a long reply the rules read whole (is it an acceptance? an agreement?)."""
    from core.minutes.rules import find_actions, find_decisions
    from core.models import Meeting, Turn

    meeting = Meeting(turns=[Turn(1, "Ada", "Ben, can you send the report by Friday?"), Turn(2, "Ben", reply)],
                      date="2026-03-02")
    return lambda: (find_actions(meeting), find_decisions(meeting))


def _pattern(modules: tuple[str, ...], name: str, method: str, text: str):
    """``name`` from the first of ``modules`` that has it (the cleaning patterns moved to core.textutil)."""
    import importlib

    rx = next(getattr(m, name) for m in map(importlib.import_module, modules) if hasattr(m, name))
    return lambda: getattr(rx, method)(*([" ", text] if method == "sub" else [text]))


_RULES = ("core.textutil", "core.minutes.rules")


# name: (what it attacks, through, default size, builder(size, tmp) -> zero-argument call)
ATTACKS = {
    "vtt-voice": ("subtitles _VOICE: '<v ' * n in a cue", "load_file .vtt", 20_000,
                  lambda n, tmp: _load(tmp, "a.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\n" + "<v " * n + "\n")),
    "srt-tags": ("subtitles _TAG: '<' * n in a cue", "load_file .srt", 100_000,
                 lambda n, tmp: _load(tmp, "a.srt", "1\n00:00:00,000 --> 00:00:01,000\nhi " + "<" * n + "\n")),
    "srt-ass": ("subtitles _ASS_OVERRIDE: '{\\' * n", "load_file .srt", 50_000,
                lambda n, tmp: _load(tmp, "a.srt", "1\n00:00:00,000 --> 00:00:01,000\nhi " + "{\\" * n + "\n")),
    "html-attr": ("HTML parser: '<a b=' * n", "load_file .html", 8_000,
                  lambda n, tmp: _load(tmp, "a.html", "<p>hello</p>" + "<a b=" * n)),
    "html-comment": ("HTML parser: '<!--' * n", "load_file .html", 20_000,
                     lambda n, tmp: _load(tmp, "a.html", "<p>hello</p>" + "<!--" * n)),
    "md-heading": ("markdown _ATX_HEADING: '# a' + ' \\t' * n + 'b'", "load_file .md", 12_000,
                   lambda n, tmp: _load(tmp, "a.md", "# a" + " \t" * n + "b\n\nbody\n")),
    "text-reflow": ("textutil.reflow: 'a\\n' * n (wrapped lines)", "load_file .txt", 50_000,
                    lambda n, tmp: _load(tmp, "a.txt", "a\n" * n)),
    "text-5mb": ("textutil.reflow: a 5 MB file of wrapped lines", "load_file .txt", 2_500_000,
                 lambda n, tmp: _load(tmp, "a.txt", "a\n" * n)),
    "csv-quotes": ("csv.Sniffer sample: '\"\\n' * n", "load_file .csv", 10_000,
                   lambda n, tmp: _load(tmp, "a.csv", "x\n" + '"\n' * n)),
    "mail-params": ("e-mail header parser: Content-Type with n RFC 2231 parameters", "load_file .eml", 8_000,
                    lambda n, tmp: _load(tmp, "a.eml", "From: a@example.com\nSubject: hi\nMIME-Version: 1.0\n"
                                         "Content-Type: text/plain; " + "a*0*=x; " * n + "\n\nbody\n")),
    "mail-comments": ("e-mail header parser: From with n nested '('", "load_file .eml", 5_000,
                      lambda n, tmp: _load(tmp, "a.eml", "From: " + "(" * n + "\nSubject: hi\n\nbody\n")),
    "minutes-repeat": ("rules clean() repeated words: \"a'\" * n", "find_actions", 12_000,
                       lambda n, tmp: _minutes("a'" * n)),
    "minutes-dash": ("rules clean() broken-off dash: '-' * n", "find_actions", 25_000,
                     lambda n, tmp: _minutes("x" + "-" * n + "x.")),
    "minutes-okay": ("rules is_acceptance(): 'Okay. ' * n", "find_actions", 2_000,
                     lambda n, tmp: _minutes("Okay. " * n)),
    "minutes-tags": ("rules clean() _TAG: '<' * n", "find_actions", 100_000,
                     lambda n, tmp: _minutes("<" * n)),
    "minutes-markup": ("extractive minutes _MARKUP: '[' * n", "pattern", 100_000,
                       lambda n, tmp: _pattern(("core.minutes.extractive",), "_MARKUP", "sub", "[" * n)),
    "cite-spaces": ("validation _CITE: ' ' * n in a draft", "validate", 100_000,
                    lambda n, tmp: _validate("x" + " " * n + "y")),
    "llm-fence": ("minutes prompts _FENCE: '```' + ' ' * n + 'x'", "parse_reply", 50_000,
                  lambda n, tmp: _reply("```" + " " * n + "x")),
    "punct-space": ("rules _PUNCT_SPACE: ' ' * n", "pattern", 20_000,
                    lambda n, tmp: _pattern(_RULES, "_PUNCT_SPACE", "sub", " " * n + "x")),
    "boundary": ("rules _BOUNDARY: ' ' * n", "pattern", 10_000,
                 lambda n, tmp: _pattern(_RULES, "_BOUNDARY", "split", " " * n + "x")),
    "decision-prefix": ("rules _DECISION_PREFIX: 'Decision:' + ' ' * n + newline", "pattern", 50_000,
                        lambda n, tmp: _pattern(_RULES, "_DECISION_PREFIX", "match",
                                                "Decision:" + " " * n + "\nx\ny")),
    "please-name": ("rules _PLEASE: 'Za' * n", "pattern", 8_000,
                    lambda n, tmp: _pattern(_RULES, "_PLEASE", "search", "Za" * n)),
}


def _validate(draft: str):
    from core.answer.validation import validate

    return lambda: validate(draft, [])


def _reply(reply: str):
    from core.minutes.prompts import parse_reply

    return lambda: parse_reply(reply)


def child(name: str, size: int, code: str) -> None:
    """Run one attack in this process and print {seconds, outcome, peak_grew_mib} as JSON."""
    import core

    if not core.__file__.startswith(code):
        raise SystemExit(f"imported {core.__file__}, not the code under test in {code}")
    build = ATTACKS[name][3]
    with tempfile.TemporaryDirectory() as tmp:
        try:  # a tiny input first: imports and caches are not the attack's time
            build(1, Path(tmp))()
        except Exception:
            pass
        call = build(size, Path(tmp) / "attack")
        rss_before = _reset_peak()
        started = time.perf_counter()
        try:
            call()
            outcome = "ok"
        except RecursionError:
            outcome = "RecursionError (crash)"
        except Exception as e:  # the outcome is part of the figure: a clear refusal is fine
            outcome = type(e).__name__
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "outcome": outcome, "peak_grew_mib": round(_status("VmHWM") - rss_before)}))


def _status(field: str) -> float:
    """A field of /proc/self/status in MiB (VmRSS: resident now, VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> float:
    """Reset this process's peak RSS to its current RSS (Linux clear_refs), so the peak measures the call."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


# ----------------------------------------------------------------------- the parent

def _code_from(ref: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref, "core"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run(name: str, size: int, code: Path, limit_s: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")} | {"PYTHONPATH": str(code)}
    try:
        done = subprocess.run([sys.executable, __file__, "--child", name, str(size), str(code)], capture_output=True,
                              text=True, timeout=limit_s, cwd=code, env=env)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "outcome": f"stopped after {limit_s:.0f} s", "peak_grew_mib": None}
    if done.returncode != 0:
        return {"seconds": None, "outcome": "error: " + (done.stderr.strip().splitlines() or ["?"])[-1][:80],
                "peak_grew_mib": None}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _grew(r: dict) -> str:
    return "-" if r["peak_grew_mib"] is None else str(r["peak_grew_mib"])


def _seconds(r: dict, limit_s: float) -> str:
    return f"> {limit_s:.0f}" if r["seconds"] is None and r["outcome"].startswith("stopped") else (
        "-" if r["seconds"] is None else f"{r['seconds']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help="git revision of the code before (default HEAD)")
    parser.add_argument("--only", help="comma-separated attack names (default: all): " + ", ".join(ATTACKS))
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before a run is stopped")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every attack's size")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, size, code = args.child
        child(name, int(size), code)
        return

    sys.path.insert(0, str(HERE))
    from common import ROOT, header, quiet, table, write_result

    quiet()
    info = header(f"ReDoS and quadratic scans over user text: {args.ref} vs working tree")
    names = args.only.split(",") if args.only else list(ATTACKS)
    rows, result = [], {"info": info, "ref": args.ref, "limit_s": args.limit, "attacks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        before_code = _code_from(args.ref, Path(tmp))
        for name in names:
            what, through, size, _ = ATTACKS[name]
            size = int(size * args.scale)
            before = _run(name, size, before_code, args.limit)
            after = _run(name, size, ROOT, args.limit)
            rows.append([name, what, through, size, _seconds(before, args.limit), before["outcome"],
                         _seconds(after, args.limit), after["outcome"], _grew(before), _grew(after)])
            result["attacks"][name] = {"what": what, "through": through, "size": size, "before": before,
                                       "after": after}
            print(f"  {name}: before {_seconds(before, args.limit)} s ({before['outcome']}), "
                  f"after {_seconds(after, args.limit)} s ({after['outcome']})", flush=True)
    print()
    table("Attacks (n = size; seconds of the call; MiB the child's peak RSS grew during it)",
          ["attack", "what", "through", "n", "before s", "before", "after s", "after", "before +MiB", "after +MiB"],
          rows)
    write_result("attacks_regex", result)


if __name__ == "__main__":
    main()
