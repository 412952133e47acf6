"""The deployment files: schema-valid (deploy/validate.sh), and consistent with the code they run."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.cli import build_parser
from streamrec.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


def k8s_resources() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in k8s_resources() if r["kind"] == kind}


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec = resource["spec"]
    return (spec["jobTemplate"]["spec"] if resource["kind"] == "CronJob" else spec)["template"]["spec"]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_validators_pass() -> None:
    """kubernetes-validate --strict, check-jsonschema (Compose Specification) and hadolint, all offline."""
    result = subprocess.run([str(DEPLOY / "validate.sh")], capture_output=True, text=True, timeout=120,
                            env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                 "BIN": str(Path(sys.executable).parent)}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "manifest(s) valid" in result.stdout and "Dockerfile: hadolint clean" in result.stdout


def test_kubernetes_validate_is_strict_offline(tmp_path: Path) -> None:
    """The validator really rejects an unknown field (so a pass above means something)."""
    from kubernetes_validate.utils import latest_version, validate

    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "bogus": 1}, "data": {}}
    with pytest.raises(Exception, match="bogus"):
        validate(bad, latest_version(), strict=True)


def test_kustomization_lists_every_manifest_but_the_examples_and_applies_no_secret() -> None:
    """Applying the kustomization must never overwrite real secrets with the example's placeholders."""
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    examples = {p.name for p in K8S.glob("*.example.yaml")}
    assert examples == {"secret.example.yaml"}
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
                                    and p.name not in examples)
    applied = [doc for name in listed for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    assert not [d["metadata"]["name"] for d in applied if d["kind"] == "Secret"]
    assert "change-me" not in "".join((K8S / name).read_text() for name in listed)


def test_every_secret_a_pod_uses_is_in_the_example() -> None:
    example = {d["metadata"]["name"] for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d}
    used = set()
    for r in k8s_resources():
        if r["kind"] in ("Deployment", "CronJob"):
            spec = pod_spec(r)
            used |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            used |= {e["secretRef"]["name"] for c in spec["containers"] for e in c.get("envFrom", []) if "secretRef" in e}
    assert used == example, (used, example)


def test_every_variable_named_is_a_setting() -> None:
    """A misspelt STREAMREC_* variable would be ignored silently at run time."""
    texts = [p.read_text() for p in [*K8S.glob("*.yaml"), DEPLOY / "docker-compose.yml", DEPLOY / "Dockerfile"]]
    named = {m for text in texts for m in re.findall(r"\bSTREAMREC_[A-Z0-9_]+\b", text)}
    named -= {"STREAMREC_IMAGE"}  # compose's own variable: which image tag to run
    assert named and named <= SETTINGS, sorted(named - SETTINGS)
    for key in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_USERNAME", "KAFKA_PASSWORD",
                "KAFKA_SSL_CAFILE", "REDIS_URL"):
        assert ENV_PREFIX + key in named, key


def test_configmap_and_secret_make_valid_settings() -> None:
    env = {**by_kind("ConfigMap")["streamrec-config"]["data"],
           **by_kind("Secret")["streamrec-credentials"]["stringData"]}
    settings = Settings.from_env(env)
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.redis_address.startswith("rediss://")


def test_every_command_run_parses() -> None:
    """The commands of the compose services, the pods and the health checks are real CLI commands."""
    parser = build_parser()
    commands = [s["command"] for s in compose()["services"].values() if "command" in s and "image" in s]
    commands += [c["args"] for r in k8s_resources() if r["kind"] in ("Deployment", "CronJob")
                 for c in pod_spec(r)["containers"]]
    commands += [s["healthcheck"]["test"][2:] for s in compose()["services"].values()
                 if s.get("healthcheck", {}).get("test", [None, None])[1] == "streamrec"]
    probes = [c[probe]["exec"]["command"] for r in k8s_resources() if r["kind"] == "Deployment"
              for c in pod_spec(r)["containers"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")
              if "exec" in c.get(probe, {})]
    assert len(probes) >= 3
    commands += [p[1:] for p in probes if p[0] == "streamrec"]
    assert ["health", "-q"] in commands and ["retrain", "--every", "6h", "--archive", "/archive"] in commands
    for argv in commands:
        if argv[0] in ("redis-server",):
            continue
        parser.parse_args(argv)  # SystemExit on a bad command or option


def test_compose_services() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1" and services["redis"]["image"] == "redis:7-alpine"
    assert {"kafka", "redis", "worker", "server", "archiver", "trainer"} <= services.keys()
    for name in ("kafka", "redis", "worker", "server", "archiver", "trainer"):
        assert "healthcheck" in services[name], name
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=3`
    assert set(services["server"]["ports"]) == {"127.0.0.1:50051:50051", "127.0.0.1:9108:9108"}
    for name, service in services.items():  # nothing is published beyond the Docker host's loopback
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", [])), name
    server = Settings.from_env({k: str(v) for k, v in services["server"]["environment"].items()})
    assert server.metrics_host == "0.0.0.0" and server.grpc_host == "0.0.0.0"  # reachable through the ports
    for name in ("worker", "server", "archiver", "trainer"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_compose_redis_is_capped_and_never_evicts() -> None:
    argv = compose()["services"]["redis"]["command"]
    assert argv[argv.index("--maxmemory") + 1] == "1gb" and argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


def test_server_probes_scaling_and_disruption_budget() -> None:
    server = pod_spec(by_kind("Deployment")["streamrec-server"])["containers"][0]
    ready, live = server["readinessProbe"]["exec"]["command"], server["livenessProbe"]["exec"]["command"]
    parser = build_parser()
    ready_args, live_args = parser.parse_args(ready[1:]), parser.parse_args(live[1:])
    assert ready_args.service == "streamrec.v1.Recommender" and live_args.service == ""
    assert ready_args.target == "localhost:50051" and ready_args.ca  # TLS: the native gRPC probes are plaintext
    hpas = by_kind("HorizontalPodAutoscaler")
    assert hpas["streamrec-server"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "streamrec-server" in by_kind("PodDisruptionBudget") and "streamrec-server" in by_kind("Service")


def test_the_server_runs_tls_without_reflection_and_serves_metrics_to_the_scraper() -> None:
    deployment = by_kind("Deployment")["streamrec-server"]
    spec = pod_spec(deployment)
    server = spec["containers"][0]
    env = {**by_kind("ConfigMap")["streamrec-config"]["data"],
           **by_kind("Secret")["streamrec-credentials"]["stringData"],
           **{e["name"]: e["value"] for e in server["env"]}}
    settings = Settings.from_env(env)
    assert not settings.reflection and settings.metrics_host == "0.0.0.0"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.metrics_port
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    cert_dir = str(Path(settings.tls_cert).parent)
    assert settings.tls_key and str(Path(settings.tls_key).parent) == cert_dir
    assert secrets[next(n for n, path in mounts.items() if path == cert_dir)] == "streamrec-server-tls"


def test_network_policies_deny_by_default_and_allow_each_role_its_peers() -> None:
    policies = by_kind("NetworkPolicy")
    deny = policies["streamrec-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = policies["streamrec-dns"]["spec"]
    assert dns["podSelector"] == {} and {p["port"] for p in dns["egress"][0]["ports"]} == {53}

    def rules(component: str) -> dict[str, Any]:
        [spec] = [p["spec"] for p in policies.values()
                  if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == component]
        return spec

    def ports(rule_list: list[dict[str, Any]]) -> set[int]:
        return {p["port"] for rule in rule_list for p in rule["ports"]}

    server = rules("server")
    assert ports(server["ingress"]) == {50051, 9108}
    [metrics] = [r for r in server["ingress"] if ports([r]) == {9108}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert ports(server["egress"]) == {6380}  # Redis only
    assert ports(rules("worker")["egress"]) == {9093, 6380} and rules("worker")["ingress"] == []  # Kafka, Redis
    assert ports(rules("archiver")["egress"]) == {9093}
    assert ports(rules("trainer")["egress"]) == {6380}
    kafka_port = int(by_kind("ConfigMap")["streamrec-config"]["data"]["STREAMREC_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":")[1])
    redis_port = int(by_kind("Secret")["streamrec-credentials"]["stringData"]["STREAMREC_REDIS_URL"]
                     .split("@")[1].split("/")[0].rsplit(":")[1])
    assert (kafka_port, redis_port) == (9093, 6380)


def test_workers_never_outnumber_partitions() -> None:
    partitions = int(by_kind("ConfigMap")["streamrec-config"]["data"]["STREAMREC_TOPIC_PARTITIONS"])
    assert by_kind("HorizontalPodAutoscaler")["streamrec-worker"]["spec"]["maxReplicas"] <= partitions
    assert by_kind("Deployment")["streamrec-worker"]["spec"]["replicas"] <= partitions


def test_archiver_is_alone_and_the_trainer_never_overlaps() -> None:
    archiver = by_kind("Deployment")["streamrec-archiver"]["spec"]
    assert archiver["replicas"] == 1 and archiver["strategy"]["type"] == "Recreate"
    assert by_kind("CronJob")["streamrec-trainer"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert by_kind("PersistentVolumeClaim")["streamrec-shared"]["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("name", ["streamrec-server", "streamrec-worker", "streamrec-archiver", "streamrec-trainer"])
def test_pods_are_non_root_read_only_and_bounded(name: str) -> None:
    resource = {**by_kind("Deployment"), **by_kind("CronJob")}[name]
    spec = pod_spec(resource)
    assert spec["securityContext"]["runAsNonRoot"] is True
    for container in spec["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/var/lib/streamrec"} <= mounts  # the only places written besides the volumes


def test_the_server_mounts_the_registry_and_not_the_data() -> None:
    """A release is artifacts only: the server needs the models, read-only, and nothing of the datasets."""
    server = pod_spec(by_kind("Deployment")["streamrec-server"])["containers"][0]
    paths = {m["mountPath"]: m for m in server["volumeMounts"]}
    env = by_kind("ConfigMap")["streamrec-config"]["data"]
    assert paths[env["STREAMREC_REGISTRY"]]["readOnly"] and env["STREAMREC_DATA_DIR"] not in paths
    assert compose()["services"]["server"]["volumes"] == ["models:/models:ro"]
