"""The Helm chart (ops/helm/imp), linted and rendered offline with Helm's own SDK (helm-python-sdk), every object
checked against the Kubernetes schemas (kubernetes-validate), and the wiring an operator relies on asserted:
secrets only from the Secret, real IMP settings in the ConfigMap, one scheduler and one Slack worker, external
endpoints without in-chart servers, the LLM on GPU nodes."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, SecretStr

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (the dev extra has it)")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (the dev extra has it)")

from core.config import Settings  # noqa: E402  (after the skips: nothing to import without them)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "ops" / "helm" / "imp"
APPS = ROOT / "ops" / "argocd" / "applications"
STAGES = ("development", "staging", "production")
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.31.0", "1.37.0")
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
IMP_COMPONENTS = ("api", "slack", "worker")

TOKEN = "k8s-test-token-6f1d2a9c"
PASSWORD = "9b3e71c0d2f84a56"
OWN_SECRET = {"existingSecret": "", "slack": {"enabled": True},
              "secrets": {"IMP_API__TOKEN": TOKEN, "POSTGRES_PASSWORD": PASSWORD,
                          "IMP_SLACK__BOT_TOKEN": "xoxb-1-test-bot", "IMP_SLACK__APP_TOKEN": "xapp-1-test-app"}}
EXTERNAL = {"existingSecret": "", "secrets": {"IMP_API__TOKEN": TOKEN},
            "postgresql": {"external": {"url": f"postgresql://imp:{PASSWORD}@db.example.com:5432/imp"}},
            "chroma": {"external": {"url": "http://chroma.example.com:8000"}},
            "mlflow": {"external": {"uri": "http://mlflow.example.com:5000"}}}
GPU_NODES = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GPU = {"llm": {"enabled": True, "modelClaim": "llama-7b"},
       "worker": {"gpus": 1, "image": {"repository": "registry.example.com/imp-cuda"},
                  "nodeSelector": GPU_NODES, "tolerations": [GPU_TOLERATION]}}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage_values(stage: str) -> dict:
    """The values ArgoCD hands Helm for a stage: its valueFiles in order, then its fileParameters."""
    source = yaml.safe_load((APPS / f"{stage}.yaml").read_text())["spec"]["source"]
    chart_dir = ROOT / source["path"]
    values: dict = {}
    for name in source["helm"].get("valueFiles", []):
        values = _merge(values, yaml.safe_load((chart_dir / name).read_text()) or {})
    for param in source["helm"].get("fileParameters", []):
        node = values
        *parents, leaf = param["name"].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = (chart_dir / param["path"]).read_text()
    return values


VARIANTS = {"defaults": {}, "own-secret": OWN_SECRET, "external": EXTERNAL, "gpu": GPU,
            **{f"stage-{s}": stage_values(s) for s in STAGES}}


def render(values: dict, namespace: str = "imp-test") -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="imp", namespace=namespace)
    return [doc for path, text in manifests.items() if path.endswith(".yaml")  # NOTES.txt is text for people
            for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def imp_containers(docs: list[dict]) -> dict[str, dict]:
    """The IMP process containers (api, slack, worker) by component."""
    return {c: find(docs, "Deployment", f"imp-{c}")["spec"]["template"]["spec"]["containers"][0]
            for c in IMP_COMPONENTS if find(docs, "Deployment", f"imp-{c}")}


def setting_names() -> tuple[set[str], set[str]]:
    """Every IMP_* name Settings reads (nested groups joined with "__", aliases too), and the secret ones."""
    names, secrets = set(), {"IMP_DB__URL"}  # the database URL may hold a password (topology), whatever its type

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field_name, field in model.model_fields.items():
            aliases = [field_name]
            if field.validation_alias is not None and hasattr(field.validation_alias, "choices"):
                aliases += [a for a in field.validation_alias.choices if isinstance(a, str)]
            types = typing.get_args(field.annotation) or (field.annotation,)
            nested = [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]
            for alias in dict.fromkeys(aliases):
                name = f"{prefix}{alias.upper()}"
                if nested:
                    walk(nested[0], name + "__")
                    continue
                names.add(name)
                if any(isinstance(t, type) and issubclass(t, SecretStr) for t in types):
                    secrets.add(name)

    walk(Settings, "IMP_")
    return names, secrets


def expand(env: list[dict], base: dict[str, str], secret: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom first, then env in order, $(VAR) expanded."""
    out = dict(base)
    for item in env:
        if "value" in item:
            out[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                       lambda m: out.get(m.group(1), m.group(0)), item["value"])
        elif (ref := item["valueFrom"].get("secretKeyRef")) and ref["key"] in secret:
            out[item["name"]] = secret[ref["key"]]
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_lints_clean(variant):
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], (report["errors"], problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_passes_the_kubernetes_schemas(variant):
    docs = render(VARIANTS[variant])
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"} <= {d["kind"] for d in docs}
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in OPERATOR_KINDS:
            continue  # CRDs: no schema ships; their fields are checked in the monitoring test below
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {e}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_secret_settings_come_only_from_the_secret(variant):
    docs = render(VARIANTS[variant])
    _, secret_names = setting_names()
    config = find(docs, "ConfigMap", "imp-config")["data"]
    assert not secret_names & set(config), "a secret setting is in the ConfigMap"
    secret_name = VARIANTS[variant].get("existingSecret", "imp-secrets") or "imp-secrets"
    for component, container in imp_containers(docs).items():
        env = {e["name"]: e for e in container["env"]}
        for name in secret_names - {"IMP_DB__URL"}:
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret_name, (component, name)
        db = env["IMP_DB__URL"]
        if "value" in db:  # the in-chart database: the URL is composed from the Secret's password
            assert "$(POSTGRES_PASSWORD)" in db["value"]
            assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret_name
        else:
            assert db["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "IMP_DB__URL"}
    # A secret given in values appears in the Secret and nowhere else.
    for value in VARIANTS[variant].get("secrets", {}).values():
        holders = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if value in yaml.safe_dump(d)]
        assert holders == ["Secret/imp-secrets"], holders


def test_a_secret_setting_given_as_plain_config_is_refused_by_name():
    _, secret_names = setting_names()
    for name in sorted(secret_names):
        with pytest.raises(helm.HelmError, match=f"config.{name} is a secret: put it in the Secret"):
            render({"config": {name: "some-value-1234567890"}})


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_names_are_real_settings(variant):
    names, _ = setting_names()
    config = find(render(VARIANTS[variant]), "ConfigMap", "imp-config")["data"]
    unknown = sorted(k for k in config if k.startswith("IMP_") and k not in names)
    assert unknown == [], f"not settings of core.config.Settings: {unknown}"


def test_the_rendered_environment_is_one_imp_reads(monkeypatch):
    docs = render(OWN_SECRET)
    config = find(docs, "ConfigMap", "imp-config")["data"]
    env = expand(imp_containers(docs)["api"]["env"], config, OWN_SECRET["secrets"])
    assert env["IMP_DB__URL"] == f"postgresql://imp:{PASSWORD}@imp-postgresql:5432/imp"
    for name in [k for k in os.environ if k.startswith("IMP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(settings.data_dir) == "/data"
    assert settings.chroma.url == "http://imp-chroma:8000"
    assert settings.mlflow.tracking_uri == "http://imp-mlflow:5000"
    assert settings.api.token.get_secret_value() == TOKEN
    assert settings.slack.app_token.get_secret_value() == "xapp-1-test-app"
    assert settings.database_url == f"postgresql+psycopg://imp:{PASSWORD}@imp-postgresql:5432/imp"
    # the DB's Service serves the port the URL names
    service = find(docs, "Service", "imp-postgresql")
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]


def test_scheduler_and_slack_run_one_replica_and_never_two_during_an_update():
    docs = render(stage_values("production"))
    for component in ("worker", "slack"):
        spec = find(docs, "Deployment", f"imp-{component}")["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, component
    assert imp_containers(docs)["worker"]["args"] == ["worker"]
    assert imp_containers(docs)["slack"]["args"] == ["slack"]
    # The API scales with CPU: the HPA owns its replica count, the Deployment leaves it alone.
    api = find(docs, "Deployment", "imp-api")["spec"]
    hpa = find(docs, "HorizontalPodAutoscaler", "imp-api")
    assert "replicas" not in api and hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "imp-api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # Node drains keep an API pod serving; a single replica gets no budget (a drain would block forever).
    assert find(docs, "PodDisruptionBudget", "imp-api")["spec"]["maxUnavailable"] == 1
    assert find(render(stage_values("development")), "PodDisruptionBudget", "imp-api") is None
    # Slack off: no Socket Mode process at all.
    assert find(render({}), "Deployment", "imp-slack") is None


def test_external_endpoints_render_no_in_chart_servers():
    docs = render(EXTERNAL)
    assert [d for d in docs if d["kind"] == "StatefulSet"] == []
    assert {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "Service")} == {"imp-api", "imp-worker"}
    config = find(docs, "ConfigMap", "imp-config")["data"]
    assert config["IMP_CHROMA__URL"] == "http://chroma.example.com:8000"
    assert config["IMP_MLFLOW__TRACKING_URI"] == "http://mlflow.example.com:5000"
    secret = find(docs, "Secret", "imp-secrets")["stringData"]
    assert secret["IMP_DB__URL"] == EXTERNAL["postgresql"]["external"]["url"]
    assert "POSTGRES_PASSWORD" not in {e["name"] for e in imp_containers(docs)["api"]["env"]}
    # ...while the defaults bring all three servers, with storage of their own.
    defaults = render({})
    assert {d["metadata"]["name"] for d in defaults if d["kind"] == "StatefulSet"} == {"imp-postgresql", "imp-chroma"}
    assert find(defaults, "Deployment", "imp-mlflow") and find(defaults, "PersistentVolumeClaim", "imp-mlflow")


def test_gpu_variant_puts_the_llm_on_gpu_nodes_and_wires_imp_to_it():
    docs = render(GPU)
    pod = find(docs, "Deployment", "imp-llm")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == GPU_NODES and GPU_TOLERATION in pod["tolerations"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "llama-7b", "readOnly": True}} in pod["volumes"]
    config = find(docs, "ConfigMap", "imp-config")["data"]
    assert config["IMP_LLM__BACKEND"] == "openai" and config["IMP_LLM__BASE_URL"] == "http://imp-llm:8000/v1"
    assert any(a == f"--served-model-name={config['IMP_LLM__MODEL']}" for a in pod["containers"][0]["args"])
    assert find(docs, "Service", "imp-llm")["spec"]["ports"][0]["port"] == 8000
    worker = find(docs, "Deployment", "imp-worker")["spec"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["containers"][0]["image"] == "registry.example.com/imp-cuda:0.1.0"
    assert worker["nodeSelector"] == GPU_NODES and worker["tolerations"] == [GPU_TOLERATION]
    # api pods stay off the GPU nodes' resources
    assert "nvidia.com/gpu" not in imp_containers(docs)["api"]["resources"]["limits"]


@pytest.mark.parametrize("variant", ["own-secret", "stage-production", "gpu"])
def test_imp_pods_run_unprivileged_on_a_read_only_root(variant):
    docs = render(VARIANTS[variant])
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], d["metadata"]["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for name in [*[f"imp-{c}" for c in IMP_COMPONENTS], "imp-mlflow"]:
        if (d := find(docs, "Deployment", name)) is None:
            continue
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["securityContext"]["runAsUser"] == 10001 and c["securityContext"]["readOnlyRootFilesystem"] is True
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert tmp == {"name": "tmp", "emptyDir": {}} and {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    api = imp_containers(docs)["api"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize(("allowed", "host"), [
    (None, None), ("*", None), ("imp.example.com,imp-api", "imp.example.com"),
    ('["imp-api", "imp.example.com"]', "imp-api"),
])
def test_probes_send_a_host_the_api_answers(allowed, host):
    docs = render({"config": {"IMP_API__ALLOWED_HOSTS": allowed}} if allowed else {})
    api = imp_containers(docs)["api"]
    expected = {"path": "/healthz", "port": "http"}
    if host:  # the API answers 400 to a Host it was not told; the kubelet would send the pod IP
        expected["httpHeaders"] = [{"name": "Host", "value": host}]
    assert api["readinessProbe"]["httpGet"] == api["livenessProbe"]["httpGet"] == expected
    # the worker opens no port: it is ready when the database answers
    assert imp_containers(docs)["worker"]["readinessProbe"]["exec"]["command"] == ["imp-healthcheck", "--db"]


def test_the_shared_data_volume_is_read_write_many_and_mounted_by_every_imp_process():
    docs = render(_merge(OWN_SECRET, {"persistence": {"storageClass": "nfs-client"}}))
    pvc = find(docs, "PersistentVolumeClaim", "imp-data")["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"] == "nfs-client"
    for component in IMP_COMPONENTS:
        pod = find(docs, "Deployment", f"imp-{component}")["spec"]["template"]["spec"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "imp-data"}} in pod["volumes"], component


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_service_reaches_a_pod_on_a_port_it_opens(variant):
    docs = render(VARIANTS[variant])
    pods = [d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        matched = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        assert len(matched) == 1, svc["metadata"]["name"]
        ports = {p["name"] for c in matched[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, svc["metadata"]["name"]
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert find(docs, "Service", backend["name"]) is not None


def test_staging_ingress_serves_its_host_over_tls():
    ingress = find(render(stage_values("staging")), "Ingress", "imp-api")["spec"]
    values = stage_values("staging")["ingress"]
    assert ingress["rules"][0]["host"] == values["host"]
    assert ingress["tls"] == [{"hosts": [values["host"]], "secretName": values["tlsSecretName"]}]
    assert find(render({}), "Ingress", "imp-api") is None  # off by default


def test_production_monitoring_scrapes_job_imp_api_and_carries_the_repository_rules():
    docs = render(stage_values("production"))
    rules = find(docs, "PrometheusRule", "imp")
    expected = yaml.safe_load((ROOT / "ops" / "prometheus" / "rules.yml").read_text())["groups"]
    assert rules["spec"]["groups"] == expected  # the file itself, alert texts with {{ $labels }} untouched
    monitor = find(docs, "ServiceMonitor", "imp-api")["spec"]
    service = find(docs, "Service", "imp-api")["metadata"]["labels"]
    assert service[monitor["jobLabel"]] == "imp-api"  # what rules.yml and the dashboard select
    assert monitor["selector"]["matchLabels"].items() <= service.items()
    assert monitor["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(("values", "reason"), [
    ({"config": {"imp_log_level": "INFO"}}, "only IMP_\\* settings belong in config"),
    ({"config": {"IMP_CHROMA__URL": "http://x:8000"}}, "wired by the chart"),
    ({"config": {"IMP_SEARCH__CANDIDATES": [1, 2]}}, "give a string, number or boolean"),
    ({"secrets": {"AWS_SECRET": "x"}}, "secrets.AWS_SECRET is not a key the chart reads"),
    ({"existingSecret": ""}, "needs a token: set existingSecret, or secrets.IMP_API__TOKEN"),
    ({"existingSecret": "", "secrets": {"IMP_API__TOKEN": TOKEN}},
     "in-chart PostgreSQL needs secrets.POSTGRES_PASSWORD"),
    ({"postgresql": {"external": {"url": "mysql://db/imp"}}}, "must be a postgresql:// URL"),
    ({"llm": {"enabled": True}}, "llm.enabled needs llm.modelClaim"),
    ({"metrics": {"prometheusRule": {"enabled": True}}}, "--set-file metrics.prometheusRule.rules"),
    ({"metrics": {"prometheusRule": {"enabled": True, "rules": "just text"}}}, "not a Prometheus rules file"),
])
def test_wrong_values_fail_with_a_reason_naming_the_value(values, reason):
    with pytest.raises(helm.HelmError, match=reason):
        render(values)
