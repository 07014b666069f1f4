"""A local OpenAI-compatible chat server for a GGUF model: llama.cpp's own server through xllamacpp.

IMP's ``openai`` backend then talks to it over HTTP like to any vLLM or Ollama server:

    python -m ops.llamacpp_server [--model FILE.gguf] [--port 8080] [--threads N]
    IMP_LLM__BACKEND=openai IMP_LLM__BASE_URL=http://127.0.0.1:8080/v1 IMP_LLM__MODEL=smollm2 imp ...

Without ``--model`` it serves the bundled SmolLM2-135M-Instruct GGUF. It listens on
127.0.0.1 unless told otherwise, and refuses any other address without an API key (read
from an environment variable, never from the command line, where ``ps`` would show it).
``LlamaCppProcess`` runs the same server as a child process (for benchmarks and tests).
xllamacpp is imported only when a server starts.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from core.errors import BackendError

log = logging.getLogger(__name__)

READY = "IMP-LLAMACPP-LISTENING"  # the line the server prints on stdout once it answers


@dataclass(frozen=True, slots=True)
class ServerConfig:
    model: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port; the ready line says which
    threads: int | None = None  # None: every core this process may use
    context_tokens: int = 0  # 0: the model's own training context (8,192 for SmolLM2)
    api_key: str | None = None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(cfg: ServerConfig, ready: Callable[[str], None], stop: threading.Event) -> None:
    """Run llama.cpp's HTTP server in this process until ``stop`` is set; ``ready`` gets its address."""
    if not cfg.model.is_file():
        raise BackendError(f"GGUF model not found: {cfg.model}")
    if not _loopback(cfg.host) and not cfg.api_key:
        raise BackendError(f"refusing to serve on {cfg.host} without an API key (--api-key-env)")
    # llama.cpp's OpenMP workers spin while they wait; on a machine shared with other work that
    # makes decoding 15-20x slower (measured: 0.9 vs 16 tokens/s on 2 busy cores). Read at import.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import xllamacpp as xlc
    except ImportError as e:
        raise BackendError("xllamacpp is not installed (pip install xllamacpp)") from e

    threads = cfg.threads or len(os.sched_getaffinity(0))
    p = xlc.CommonParams()
    p.model.path = str(cfg.model)
    p.hostnames = [cfg.host]
    p.port = cfg.port
    p.n_ctx = cfg.context_tokens
    p.n_parallel = 1  # one request decodes at a time; on a few cores more slots only split the context
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.ui = False
    p.offline = True  # never fetch a model from a hub
    if cfg.api_key:
        p.api_keys = [cfg.api_key]
    try:
        server = xlc.Server(p)
    except Exception as e:  # xllamacpp raises plain RuntimeErrors
        raise BackendError(f"llama.cpp could not serve {cfg.model.name}: {e}") from e
    try:
        ready(server.listening_address)
        stop.wait()
    finally:
        del server  # its destructor stops the HTTP threads and frees the model


class LlamaCppProcess:
    """The server above as a child process: started, its address read, stopped or killed."""

    def __init__(self, model: Path, *, threads: int | None = None, context_tokens: int = 0,
                 api_key_env: str | None = None, env: dict[str, str] | None = None, start_timeout_s: float = 120.0):
        self._args = [sys.executable, "-m", "ops.llamacpp_server", "--model", str(model),
                      "--context", str(context_tokens)]
        if threads:
            self._args += ["--threads", str(threads)]
        if api_key_env:
            self._args += ["--api-key-env", api_key_env]
        self._env = env
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen | None = None
        # llama.cpp logs a lot; a pipe nobody reads would block it. Closed in __exit__.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.address = ""

    @property
    def base_url(self) -> str:
        return self.address + "/v1"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Self:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, **(self._env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True)
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._timeout)
        line = ready[0] if ready else ""
        if not line.startswith(READY):
            self.stop()
            raise BackendError(f"llama.cpp server did not start: {self.log_tail()}")
        self.address = line.split()[1]
        return self

    def log_tail(self, chars: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def kill(self) -> None:
        """End it at once, as a crash would (SIGKILL: no goodbye to open connections)."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._proc.stdout:
            self._proc.stdout.close()

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the server process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError, AssertionError):
            return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


def _bundled_model() -> Path:
    from core.llm.base import bundled_smollm2_gguf

    return bundled_smollm2_gguf()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.llamacpp_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .gguf file (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed when ready)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: all usable cores)")
    ap.add_argument("--context", type=int, default=0, help="context tokens (default: the model's own)")
    ap.add_argument("--api-key-env", help="name of an environment variable holding the API key clients must send")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        print(f"error: environment variable {args.api_key_env} is empty or unset", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = time.perf_counter()

    def ready(address: str) -> None:
        print(f"{READY} {address}", flush=True)
        log.info("serving on %s/v1 (loaded in %.1f s); Ctrl-C stops", address, time.perf_counter() - started)

    try:
        cfg = ServerConfig(model=args.model or _bundled_model(), host=args.host, port=args.port,
                           threads=args.threads, context_tokens=args.context, api_key=key)
        serve(cfg, ready, stop)
    except BackendError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
