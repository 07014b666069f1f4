"""The compose stack (ops/compose/), checked offline the way an operator would find its faults: it must be a
valid Compose file, every service must report health and wait for the health of what it needs, every IMP_*
name must be a real setting, no secret may sit in compose.yaml, every mounted file must exist, Prometheus
must reach each API replica and Grafana Prometheus, and every image must be pinned. The containers' health
check (ops/image/healthcheck.py) is run for real against local servers and databases."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "ops" / "compose"
COMPOSE = yaml.safe_load((STACK / "compose.yaml").read_text())
SERVICES: dict = COMPOSE["services"]
EXAMPLE = (STACK / "imp.env.example").read_text()
HEALTHCHECK = ROOT / "ops" / "image" / "healthcheck.py"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def _settings_names(model: type[BaseModel] = Settings, prefix: str = "IMP_") -> dict[str, bool]:
    """Every IMP_* variable Settings reads, mapped to whether it holds a secret."""
    names: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names.update(_settings_names(kind, f"{prefix}{name.upper()}__"))
        else:
            names[prefix + name.upper()] = "SecretStr" in str(kind) or kind is SecretStr
    return names


SETTINGS = _settings_names()


def _example_entries() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, set) for every `NAME=value` line of the example, set or commented out."""
    entries = {}
    for line in EXAMPLE.splitlines():
        m = re.match(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            entries[m.group(2)] = (m.group(3), m.group(1) is None)
    return entries


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (volume["source"], volume["target"])
        if source.startswith((".", "/")):
            mounts.append(((STACK / source).resolve(), target))
    return mounts


def _default(value: str) -> str:
    """``value`` with each ${VAR:-default} replaced by its default (what runs when imp.env leaves it out)."""
    return VAR.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else m.group(0), value)


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((STACK / "schema" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)
    # The schema itself is the published one, not an empty stand-in.
    assert schema["title"] == "Compose Specification" and "service" in schema["definitions"]
    bad = dict(COMPOSE, services={"api": dict(SERVICES["api"], depends_on={"db": {"condition": "healthy"}})})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_the_stack_has_every_process_of_the_plan():
    assert {"api", "worker", "slack", "chroma", "postgres", "mlflow", "prometheus", "grafana"} <= set(SERVICES)
    commands = {name: s.get("command") for name, s in SERVICES.items()}
    assert commands["api"][:2] == ["imp", "serve"] and "0.0.0.0" in commands["api"]
    assert commands["worker"] == ["imp", "worker"] and commands["slack"] == ["imp", "slack"]
    assert commands["mlflow"][:2] == ["mlflow", "server"]
    assert int(_default(str(SERVICES["api"]["deploy"]["replicas"]))) >= 2
    # Socket Mode needs Slack tokens: it starts only with --profile slack. One worker, one Slack connection.
    assert SERVICES["slack"]["profiles"] == ["slack"]
    assert "deploy" not in SERVICES["worker"] and "deploy" not in SERVICES["slack"]
    # Only the worker runs the schedule: the API replicas have it off whatever imp.env says.
    assert _environment(SERVICES["api"])["IMP_SCHEDULER__ENABLED"] == "false"


def test_every_service_reports_health():
    for name, service in SERVICES.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_every_dependency_waits_for_health():
    for name, service in SERVICES.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on a service that does not exist: {dep}"
            assert how == {"condition": "service_healthy"}, f"{name} starts before {dep} is healthy"
    for imp_process in ("api", "worker", "slack"):
        assert set(SERVICES[imp_process]["depends_on"]) == {"postgres", "chroma", "mlflow"}
    assert set(SERVICES["mlflow"]["depends_on"]) == {"postgres"}
    assert set(SERVICES["grafana"]["depends_on"]) == {"prometheus"}


def test_every_imp_variable_is_a_real_setting():
    used = set()
    for service in SERVICES.values():
        used |= {k for k in _environment(service) if k.startswith("IMP_")}
    used |= {k for k in _example_entries() if k.startswith("IMP_")}
    assert used - set(SETTINGS) == set(), "not settings of core.config.Settings"
    # The example documents every setting the stack does not set itself, so an operator finds each one there.
    wired = set(_environment(SERVICES["api"]))
    assert set(SETTINGS) - set(_example_entries()) - wired == set(), "add these to ops/compose/imp.env.example"
    assert all(f"#   {name}=" in EXAMPLE for name in wired), "the example says which settings compose.yaml sets"


def test_the_stack_wires_imp_to_its_servers():
    env = _environment(SERVICES["worker"])
    assert env["IMP_CHROMA__URL"] == "http://chroma:8000" and env["IMP_MLFLOW__TRACKING_URI"] == "http://mlflow:5000"
    assert env["IMP_DATA_DIR"] == "/data"
    assert re.fullmatch(r"postgresql://imp:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/imp", env["IMP_DB__URL"])
    # The URL is one IMP accepts once the password is in.
    url = env["IMP_DB__URL"].replace(VAR.search(env["IMP_DB__URL"]).group(0), "pw")
    assert Settings(db={"url": url}).database_url.startswith("postgresql+psycopg://imp:pw@postgres:5432/imp")
    # Every IMP process shares one data volume.
    for name in ("api", "worker", "slack"):
        assert "imp-data:/data" in SERVICES[name]["volumes"], name
    # MLflow's store is the database the init script creates, and MLflow answers the Host IMP sends.
    store = _environment(SERVICES["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    assert store.startswith("postgresql+psycopg://") and store.endswith("@postgres:5432/mlflow")
    init = [p for p, target in _bind_mounts(SERVICES["postgres"]) if target.startswith("/docker-entrypoint-initdb.d/")]
    assert init and re.search(r"CREATE DATABASE mlflow\b", init[0].read_text())
    allowed = _default(_environment(SERVICES["mlflow"])["MLFLOW_SERVER_ALLOWED_HOSTS"]).split(",")
    assert "mlflow:5000" in allowed and "mlflow" in allowed


def test_no_secret_is_written_in_compose_yaml():
    secret_names = {name for name, secret in SETTINGS.items() if secret}
    secret_names |= {"POSTGRES_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD", "MLFLOW_BACKEND_STORE_URI"}
    for name, service in SERVICES.items():
        for key, value in _environment(service).items():
            if key in secret_names or re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", key):
                assert VAR.search(value), f"{name}: {key} holds a literal value"
            # A URL's password part may only be a ${...} reference.
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert VAR.fullmatch(password), f"{name}: {key} has a password in it"
    # Secrets come from the env file; the example ships them empty, and the real file stays out of images.
    entries = _example_entries()
    for name in secret_names & set(entries):
        assert entries[name][0] == "", f"the example gives {name} a value"
    for required in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "IMP_API__TOKEN"):
        assert entries[required] == ("", True), f"{required} must be a line to fill in"
    assert "ops/compose/imp.env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_every_interpolated_variable_is_documented_and_the_required_ones_fail_clearly():
    text = (STACK / "compose.yaml").read_text()
    used = {m.group(1): (m.group(2), m.group(3)) for m in VAR.finditer(text)}
    assert set(used) - set(_example_entries()) == set(), "document these in imp.env.example"
    for name in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        how, message = used[name]
        assert how == ":?" and "imp.env" in message  # compose stops with this message when it is empty


def test_files_mounted_from_the_repository_exist():
    mounted = 0
    for name, service in SERVICES.items():
        for source, _target in _bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert ROOT in source.parents, f"{name} mounts {source} from outside the repository"
            mounted += 1
        build = service.get("build")
        if build:
            assert (STACK / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert mounted >= 6
    env_file = SERVICES["api"]["env_file"]
    assert env_file == "imp.env" and (STACK / "imp.env.example").exists()


def _prometheus_files() -> dict[str, Path]:
    return {target: source for source, target in _bind_mounts(SERVICES["prometheus"])}


def test_prometheus_scrapes_every_api_replica_with_imps_rules():
    files = _prometheus_files()
    config = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].read_text())
    # IMP's own rules, mounted from ops/prometheus, not a copy of them.
    assert files["/etc/prometheus/rules.yml"] == ROOT / "ops" / "prometheus" / "rules.yml"
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in files, f"{rule_file} is not mounted beside the config"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "imp-api")  # what rules and dashboard select
    api_port = int(SERVICES["api"]["command"][SERVICES["api"]["command"].index("--port") + 1])
    assert job["metrics_path"] == "/metrics"
    targets = [(name, sd["port"]) for sd in job["dns_sd_configs"] for name in sd["names"]]
    assert targets == [("api", api_port)]
    assert all(sd["type"] == "A" for sd in job["dns_sd_configs"])
    assert any(p.endswith(f":{api_port}") for p in SERVICES["api"]["ports"])


def test_prometheus_accepts_the_config_and_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    files = _prometheus_files()
    # Lay the files out as the container sees them, then check them with Prometheus's own tool.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for target, source in files.items():
            if target.startswith("/etc/prometheus/"):
                shutil.copy(source, Path(tmp) / Path(target).name)
        done = subprocess.run([promtool, "check", "config", str(Path(tmp) / "prometheus.yml")],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout


def test_grafana_reaches_prometheus_and_finds_the_dashboard():
    mounts = {target: source for source, target in _bind_mounts(SERVICES["grafana"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == ROOT / "ops" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "imp-prometheus.yml").read_text())["datasources"][0]
    m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)/?", datasource["url"])
    assert m and m.group(1) in SERVICES, f"Grafana's datasource {datasource['url']} is not a service of the stack"
    assert m.group(1) == "prometheus" and m.group(2) == "9090"
    folder = yaml.safe_load((provisioning / "dashboards" / "imp.yml").read_text())["providers"][0]["options"]["path"]
    dashboards = [t for t, s in mounts.items() if s == ROOT / "ops" / "grafana" / "imp.json"]
    assert dashboards and Path(dashboards[0]).parent == Path(folder)


def test_every_image_is_pinned():
    for name, service in SERVICES.items():
        image = _default(service["image"])
        assert "${" not in image, f"{name}: {service['image']} has no default"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"
    assert SERVICES["chroma"]["image"] == "chromadb/chroma:1.5.9"


def test_the_imp_processes_run_as_the_images_user():
    dockerfile = "Dockerfile"
    text = (ROOT / dockerfile).read_text()
    # Both variants (cpu, cuda) are stages on the one runtime stage: they share its user, check and environment.
    assert re.search(r"^FROM runtime AS runtime-cpu$", text, re.M)
    assert re.search(r"^FROM runtime AS runtime-cuda$", text, re.M)
    assert not re.search(r"^USER ", text.split("FROM runtime AS runtime-cpu")[1], re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    for name in ("api", "worker", "slack", "mlflow"):
        assert SERVICES[name]["user"] == "10001:10001", name
    # The image's own health check is the script tested below.
    assert "COPY ops/image/healthcheck.py /usr/local/bin/imp-healthcheck" in text
    assert re.search(r'HEALTHCHECK .*\n\s+CMD \["imp-healthcheck", "http://127.0.0.1:8000/healthz"\]', text)
    # Offline and quiet in every variant.
    for name in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "ANONYMIZED_TELEMETRY=False",
                 "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=1", "RAY_USAGE_STATS_ENABLED=0"):
        assert name in text, f"{dockerfile} does not set {name}"


# --- the health check script, run for real -----------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    hosts: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).hosts.append(self.headers["Host"])
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args):
        pass


@pytest.fixture()
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Health.status, _Health.hosts = 200, []
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()


def _check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60)


def test_healthcheck_passes_on_200_and_fails_otherwise(health_server):
    ok = _check(health_server)
    assert ok.returncode == 0 and ok.stdout.startswith("healthy")
    _Health.status = 503  # what /healthz answers when the database does not
    down = _check(health_server)
    assert down.returncode == 1 and "HTTP 503" in down.stdout
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = _check(f"http://127.0.0.1:{closed}/healthz")
    assert gone.returncode == 1 and gone.stdout.startswith("unhealthy")
    assert _check("file:///etc/passwd").returncode == 1
    assert _check().returncode == 1 and "usage" in _check().stdout


def test_healthcheck_sends_a_host_the_api_answers(health_server):
    _check(health_server, env={"IMP_API__ALLOWED_HOSTS": "*,imp.example.com"})
    _check(health_server, env={"IMP_API__ALLOWED_HOSTS": '["api.internal"]'})
    _check(health_server)
    assert _Health.hosts[0] == "imp.example.com" and _Health.hosts[1] == "api.internal"
    assert _Health.hosts[2].startswith("127.0.0.1:")


def test_healthcheck_of_the_database(tmp_path):
    ok = _check("--db", env={"IMP_DATA_DIR": str(tmp_path)})
    assert ok.returncode == 0 and "sqlite" in ok.stdout, ok.stdout + ok.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"postgresql://imp:hunter2-not-shown@127.0.0.1:{closed}/imp"
    down = _check("--db", env={"IMP_DATA_DIR": str(tmp_path), "IMP_DB__URL": url})
    assert down.returncode == 1 and "does not answer" in down.stdout
    assert "hunter2" not in down.stdout + down.stderr
