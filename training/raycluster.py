"""Start or join the Ray cluster a training run uses, and leave it as it was found.

``ray_session`` joins ``address`` when one is given (``ray://head:10001`` or ``head:6379``),
else starts a private local cluster for the run: no dashboard, no usage stats, quiet
workers, its session files under a short folder of its own in /tmp (Ray's unix sockets
live there and their paths may not exceed 107 characters). It shuts down only what it
started: a process that already called ``ray.init`` keeps its connection.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import BackendError

log = logging.getLogger(__name__)

# The object store only carries training pairs and small metrics; models travel as files.
_LOCAL_OBJECT_STORE = 256 * 1024 * 1024


@dataclass(frozen=True)
class RaySession:
    """The cluster a run uses: where it is, what it holds, whether this session started it."""

    address: str
    started: bool  # this session called ray.init, so it shuts Ray down (or disconnects) after the block
    local: bool  # a cluster of this machine alone: started here, or an existing local one
    cpus: float  # the cluster's CPUs when the session began
    gpus: float
    storage: Path  # RunConfig(storage_path=...): must be shared by every node of a real cluster
    seconds: float  # how long starting or joining took


def _quiet_env() -> None:
    # Read by ray.init and inherited by the processes it starts; set before they exist.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _resources() -> tuple[float, float]:
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None, storage: Path) -> Iterator[RaySession]:
    """Use Ray for the block: the running connection, the cluster at ``address``, or a new local one.

    ``num_cpus`` caps a local cluster (None: every core of this machine); it is ignored
    when joining. ``storage`` (created here if missing) is where runs keep checkpoints; on
    a real cluster it must be a folder every node and this driver see (NFS) for the
    trained model to reach the driver.
    """
    _quiet_env()
    import ray

    storage = Path(storage).expanduser().resolve()
    storage.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()

    if ray.is_initialized():
        # Someone in this process (a test fixture, a Tune trial, a notebook) owns the connection.
        gcs = ray.get_runtime_context().gcs_address
        cpus, gpus = _resources()
        log.debug("ray already initialised (%s); reusing it", gcs)
        yield RaySession(address=gcs, started=False, local=address is None, cpus=cpus, gpus=gpus,
                         storage=storage, seconds=0.0)
        return

    temp_dir: str | None = None
    kwargs: dict = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        "ignore_reinit_error": False,
    }
    if address:
        kwargs["address"] = address
    else:
        # "local" forces a fresh cluster even when RAY_ADDRESS points elsewhere.
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        kwargs.update(address="local", num_cpus=num_cpus, _temp_dir=temp_dir,
                      object_store_memory=_LOCAL_OBJECT_STORE)
    try:
        ctx = ray.init(**kwargs)
    except Exception as e:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = address or "a local cluster"
        raise BackendError(f"cannot start or join Ray ({where}): {e}") from e

    seconds = time.monotonic() - begin
    try:
        cpus, gpus = _resources()
        info = getattr(ctx, "address_info", None) or {}  # a ray:// client context has none
        gcs = info.get("gcs_address") or info.get("address") or str(address)
        log.info("ray %s %s in %.1f s (%g CPUs, %g GPUs)", "joined" if address else "started", gcs,
                 seconds, cpus, gpus)
        yield RaySession(address=gcs, started=True, local=not address, cpus=cpus, gpus=gpus, storage=storage,
                         seconds=seconds)
    finally:
        # Disconnects from a joined cluster, stops a local one; either way this session opened it.
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
