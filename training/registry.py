"""MLflow: experiment runs of the learning loop, and the model registry with its aliases.

Every training run is an MLflow run (parameters, per-epoch metrics, the dataset's
digest, the model's files). Candidates are registered as versions of
``imp-embedder`` or ``imp-answer-adapter``; the alias ``champion`` names the
version that serves, ``challenger`` the one a canary is trying. The bundled
model is the pseudo-version ``base``: it is never registered, it is what serves
when no champion is.

Only ``MlflowClient`` is used, never the module-level fluent API, so two
registries (two tracking URIs) in one process never share a "current run".
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BackendError, InvalidRequest, NotFound

log = logging.getLogger(__name__)

EMBEDDER = "imp-embedder"
ADAPTER = "imp-answer-adapter"
NAMES = (EMBEDDER, ADAPTER)
BASE = "base"
CHAMPION = "champion"
CHALLENGER = "challenger"
_HISTORY_TAG = "imp.champion_history"  # JSON list of the versions that were champion, oldest first

# MLflow's own telemetry thread edits os.environ while other threads read it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    metrics: dict[str, float]
    created: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)


def metric_name(key: str) -> str:
    """MLflow names allow letters, digits and ``_-. :/``: "hit@5" is recorded as "hit_at_5"."""
    return key.replace("@", "_at_")


def check_name(name: str) -> str:
    if name not in NAMES:
        raise InvalidRequest(f"unknown model {name!r}: use {' or '.join(NAMES)}")
    return name


class ModelRegistry:
    """Runs and registered versions in one MLflow tracking store (SQLite file or ``mlflow server``)."""

    def __init__(self, tracking_uri: str, experiment: str = "imp", *, artifacts: Path | None = None,
                 models_dir: Path | None = None):
        """``artifacts``: where a file-based store keeps run files (a server keeps its own);
        ``models_dir``: local copies of registered versions, the folders serving loads."""
        self._uri = tracking_uri
        self._experiment = experiment
        self._artifacts = artifacts
        self._models_dir = models_dir
        self._client_obj = None
        self._experiment_id: str | None = None

    @property
    def tracking_uri(self) -> str:
        return self._uri

    def _client(self):  # noqa: ANN202 - mlflow.MlflowClient, imported lazily
        if self._client_obj is None:
            if self._uri.startswith("sqlite:///"):
                Path(self._uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            try:
                from mlflow import MlflowClient

                self._client_obj = MlflowClient(tracking_uri=self._uri, registry_uri=self._uri)
            except Exception as e:
                raise BackendError(f"cannot open the MLflow store: {e}") from e
        return self._client_obj

    def _experiment_id_(self) -> str:
        if self._experiment_id is None:
            client = self._client()
            found = client.get_experiment_by_name(self._experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                location = None
                if self._artifacts is not None:
                    self._artifacts.mkdir(parents=True, exist_ok=True)
                    location = self._artifacts.resolve().as_uri()
                try:
                    self._experiment_id = client.create_experiment(self._experiment, artifact_location=location)
                except Exception:  # created by another process meanwhile
                    self._experiment_id = client.get_experiment_by_name(self._experiment).experiment_id
        return self._experiment_id

    # -- runs ----------------------------------------------------------------

    @contextmanager
    def run(self, name: str, *, params: dict, tags: dict | None = None) -> Iterator[Run]:
        """An MLflow run; it ends FINISHED, or FAILED when the block raises."""
        client = self._client()
        created = client.create_run(self._experiment_id_(), run_name=name,
                                    tags={k: str(v) for k, v in (tags or {}).items()})
        run = Run(client, created.info.run_id)
        run.params(params)
        try:
            yield run
        except BaseException:
            client.set_terminated(run.run_id, status="FAILED")
            raise
        client.set_terminated(run.run_id, status="FINISHED")

    # -- registry ----------------------------------------------------------------

    def register(self, name: str, run: Run, folder: Path, *, tags: dict | None = None,
                 description: str = "") -> str:
        """Log ``folder`` as the run's model files and register them as a new version of ``name``."""
        check_name(name)
        client = self._client()
        client.log_artifacts(run.run_id, str(folder), "model")
        try:
            client.get_registered_model(name)
        except Exception:
            try:
                client.create_registered_model(name)
            except Exception:  # created by another process meanwhile
                client.get_registered_model(name)
        source = f"{client.get_run(run.run_id).info.artifact_uri}/model"
        mv = client.create_model_version(name, source, run_id=run.run_id, description=description,
                                         tags={metric_name(k): str(v) for k, v in (tags or {}).items()})
        if self._models_dir is not None:  # the local copy serving loads, without a download
            target = self.local_path(name, mv.version)
            if not target.exists():
                shutil.copytree(folder, target)
        return str(mv.version)

    def local_path(self, name: str, version: str) -> Path:
        if self._models_dir is None:
            raise BackendError("no models folder is configured for this registry")
        return self._models_dir / name / str(version)

    def materialize(self, name: str, version: str) -> Path:
        """A local folder holding the version's files (copied from MLflow when not here yet)."""
        target = self.local_path(name, version)
        if target.is_dir():
            return target
        info = self.version(name, version)
        try:
            from mlflow.artifacts import download_artifacts

            tmp = target.with_name(f".{target.name}.part")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            got = Path(download_artifacts(artifact_uri=info.source, dst_path=str(tmp),
                                          tracking_uri=self._uri))
            got.rename(target) if got != tmp else tmp.rename(target)
            shutil.rmtree(tmp, ignore_errors=True)
        except Exception as e:
            raise BackendError(f"cannot fetch {name} version {version} from MLflow: {e}") from e
        return target

    def version(self, name: str, version: str) -> VersionInfo:
        check_name(name)
        if version == BASE:
            raise InvalidRequest("'base' is the bundled model; it has no registry entry")
        try:
            mv = self._client().get_model_version(name, str(version))
        except Exception as e:
            raise NotFound(f"{name} has no version {version!r}") from e
        return self._info(mv)

    def versions(self, name: str) -> list[VersionInfo]:
        """Every registered version of ``name``, oldest first."""
        check_name(name)
        try:
            found = self._client().search_model_versions(f"name='{name}'")
        except Exception as e:
            raise BackendError(f"cannot read the MLflow registry: {e}") from e
        aliases = self._aliases(name)
        return sorted((self._info(mv, aliases) for mv in found), key=lambda v: int(v.version))

    def _aliases(self, name: str) -> dict[str, list[str]]:
        """version -> its aliases (search results leave aliases out)."""
        try:
            model = self._client().get_registered_model(name)
        except Exception:
            return {}
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        return by_version

    def _info(self, mv, aliases: dict[str, list[str]] | None = None) -> VersionInfo:  # noqa: ANN001 - ModelVersion
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(self._client().get_run(mv.run_id).data.metrics)
            except Exception:  # a deleted run: the version stays listed
                log.warning("run %s of %s v%s is gone", mv.run_id, mv.name, mv.version)
        if aliases is None:
            aliases = self._aliases(mv.name)
        return VersionInfo(name=mv.name, version=str(mv.version), aliases=tuple(sorted(aliases.get(str(mv.version), ()))),
                           run_id=mv.run_id, metrics=metrics, created=str(mv.creation_timestamp),
                           source=mv.source, tags=dict(mv.tags or {}))

    def alias(self, name: str, alias: str) -> str | None:
        """The version an alias names; None when unset (for champion: the bundled model serves)."""
        try:
            return str(self._client().get_model_version_by_alias(check_name(name), alias).version)
        except InvalidRequest:
            raise
        except Exception:
            return None

    def set_alias(self, name: str, alias: str, version: str | None) -> None:
        """Point ``alias`` at ``version``; None (or ``base`` for champion) removes it."""
        client = self._client()
        if version is None or version == BASE:
            try:
                client.delete_registered_model_alias(check_name(name), alias)
            except Exception:  # already unset, or no version registered yet
                pass
            return
        self.version(name, version)  # NotFound for a version that does not exist
        client.set_registered_model_alias(name, alias, str(version))

    def history(self, name: str) -> list[str]:
        """The versions that were champion, oldest first (``base`` included)."""
        try:
            model = self._client().get_registered_model(check_name(name))
        except InvalidRequest:
            raise
        except Exception:
            return []
        return list(json.loads(model.tags.get(_HISTORY_TAG, "[]")))

    def set_history(self, name: str, versions: list[str]) -> None:
        client = self._client()
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name)
        client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(versions[-50:]))


class Run:
    """One MLflow run: parameters, metrics by step, tags."""

    def __init__(self, client, run_id: str):  # noqa: ANN001 - MlflowClient
        self._client = client
        self.run_id = run_id

    def params(self, values: dict) -> None:
        for key, value in values.items():
            if value is not None:
                self._client.log_param(self.run_id, key, str(value)[:6000])

    def metrics(self, values: dict, *, step: int | None = None) -> None:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._call(self._client.log_metric, self.run_id, metric_name(key), float(value), step=step or 0)

    def tags(self, values: dict) -> None:
        for key, value in values.items():
            self._call(self._client.set_tag, self.run_id, metric_name(key), str(value)[:5000])

    @staticmethod
    def _call(fn, *args, **kwargs) -> None:  # noqa: ANN001
        try:
            fn(*args, **kwargs)
        except Exception as e:
            raise BackendError(f"MLflow refused to record the run: {e}") from e

    def text(self, content: str, name: str) -> None:
        self._client.log_text(self.run_id, content, name)
