"""The ArgoCD manifests (ops/argocd): one AppProject and an Application per stage, read as ArgoCD reads them.

kubernetes-validate ships no schema for ArgoCD's CRDs, so the fields ArgoCD needs are checked here: the source
every stage deploys from exists in this repository, the destinations are ones the project allows, the sync
policy makes a Git revert deploy by itself, and promotion is a change of one stage's values file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "ops" / "argocd"
STAGES = ("development", "staging", "production")


def _load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path.name}: one manifest per file"
    return docs[0]


@pytest.fixture(scope="module")
def project() -> dict:
    return _load(ARGOCD / "project.yaml")


@pytest.fixture(scope="module")
def apps() -> dict[str, dict]:
    return {p.stem: _load(p) for p in sorted((ARGOCD / "applications").glob("*.yaml"))}


def test_there_is_one_application_per_stage_in_the_project(project, apps):
    assert (project["apiVersion"], project["kind"]) == ("argoproj.io/v1alpha1", "AppProject")
    assert set(apps) == set(STAGES)
    for stage, app in apps.items():
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application"), stage
        assert app["metadata"] == {**app["metadata"], "name": f"imp-{stage}", "namespace": "argocd"}
        assert app["spec"]["project"] == project["metadata"]["name"]
        assert project["metadata"]["namespace"] == "argocd"


def test_every_stage_deploys_the_chart_of_this_repository(project, apps):
    sources = [app["spec"]["source"] for app in apps.values()]
    assert len({s["repoURL"] for s in sources}) == 1, "the stages deploy from different repositories"
    assert len({s["path"] for s in sources}) == 1, "the stages deploy different charts"
    repo_url = sources[0]["repoURL"]
    assert repo_url in project["spec"]["sourceRepos"]
    assert "REPLACE" in repo_url  # a placeholder nobody mistakes for the real repository
    chart = ROOT / sources[0]["path"]
    assert (chart / "Chart.yaml").is_file() and (chart / "templates").is_dir()
    for stage, app in apps.items():
        source = app["spec"]["source"]
        assert source["targetRevision"] == "main", stage
        files = [chart / f for f in source["helm"]["valueFiles"]]
        files += [chart / p["path"] for p in source["helm"].get("fileParameters", [])]
        for f in files:
            assert f.is_file(), f"{stage}: {f} does not exist"
            assert f.resolve().is_relative_to(ROOT), f"{stage}: {f} is outside the repository (ArgoCD refuses it)"


def test_each_stage_has_a_namespace_of_its_own_that_the_project_allows(project, apps):
    allowed = {(d["server"], d["namespace"]) for d in project["spec"]["destinations"]}
    targets = [(a["spec"]["destination"]["server"], a["spec"]["destination"]["namespace"]) for a in apps.values()]
    assert len(set(targets)) == len(STAGES)
    assert set(targets) <= allowed
    for stage, app in apps.items():
        assert app["spec"]["destination"]["namespace"] == f"imp-{stage}"
        assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert {"group": "", "kind": "Namespace"} in project["spec"]["clusterResourceWhitelist"]


def test_a_git_change_deploys_by_itself_and_drift_is_healed(apps):
    # Promotion and rollback are commits: without automated sync a revert would wait for someone to click.
    for stage, app in apps.items():
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}, stage
        assert policy["retry"]["limit"] >= 1
        assert app["spec"]["revisionHistoryLimit"] >= 1


def test_promotion_is_the_image_tag_in_the_stage_values_file(apps):
    for stage, app in apps.items():
        source = app["spec"]["source"]
        values = yaml.safe_load((ROOT / source["path"] / source["helm"]["valueFiles"][-1]).read_text())
        tag = values["image"]["tag"]
        assert isinstance(tag, str) and tag, f"{stage}: image.tag must be a quoted string (0.10 is not 0.1)"
        assert "parameters" not in source["helm"], f"{stage}: a tag set in the Application bypasses the values file"


def test_every_kind_a_stage_renders_is_one_the_project_may_create(project, apps):
    pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (the dev extra has it)")
    from tests.unit.test_helm_chart import render, stage_values  # the same rendering ArgoCD does

    allowed = {(g["group"], g["kind"]) for g in project["spec"]["namespaceResourceWhitelist"]}
    for stage in apps:
        for doc in render(stage_values(stage), namespace=f"imp-{stage}"):
            group = doc["apiVersion"].rpartition("/")[0]
            assert (group, doc["kind"]) in allowed, f"{stage}: {doc['kind']} ({group or 'core'}) is not allowed"
