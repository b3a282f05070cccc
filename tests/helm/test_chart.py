"""Offline checks of the hanse-node Helm chart.

Each example values file is rendered with ``helm template`` and the manifests are checked
for what a platform team relies on: security contexts, the management port never leaving
the cluster, the default NetworkPolicy, storage per database, SuperLink ports, gRPC probes,
a node config the node accepts, and schema validity for Kubernetes 1.29 and 1.33.

helm comes from ``.tools/bin/helm`` (``bash dev/install-helm.sh``) or PATH; without it the
tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from node.config import load_config

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "hanse-node"
EXAMPLES = {path.stem: path for path in sorted((CHART / "examples").glob("*.yaml"))}
RELEASE = "hanse"
NAMESPACE = "hanse"
SUBPROCESS_TIMEOUT_S = 60
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
CRD_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
"""Custom resources the chart may render; kubernetes-validate has no schema for them, so
their shape is checked here instead."""
WORKLOAD_KINDS = ("StatefulSet", "Deployment")

Manifest = dict[str, Any]


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required when CI=true)", pytrace=False)
    pytest.skip(message)


@functools.cache
def _helm_path() -> str | None:
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = _helm_path()
    if path is None:
        _missing("helm not found: run 'bash dev/install-helm.sh' (installs .tools/bin/helm)")
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
        cwd=REPO,
    )


def _template(helm: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)


@functools.cache
def _render_cached(helm: str, args: tuple[str, ...]) -> tuple[Manifest, ...]:
    result = _template(helm, *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(helm: str, example: str, *extra: str) -> list[Manifest]:
    """The manifests of ``example`` (with extra helm arguments), parsed."""
    return list(_render_cached(helm, ("-f", str(EXAMPLES[example]), *extra)))


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workload(docs: list[Manifest]) -> Manifest:
    found = [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"expected one StatefulSet or Deployment, got {len(found)}"
    return found[0]


def node_container(docs: list[Manifest]) -> Manifest:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "node")


def container_port(docs: list[Manifest], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in node_container(docs)["ports"]}
    return int(ports[name])


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """Every pod spec the chart renders: the workload's template and bare pods (helm test)."""
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]


def node_config_text(docs: list[Manifest]) -> str:
    config_map = one(docs, "ConfigMap")
    return str(config_map["data"]["config.yaml"])


def node_config(docs: list[Manifest]) -> dict[str, Any]:
    loaded = yaml.safe_load(node_config_text(docs))
    assert isinstance(loaded, dict)
    return loaded


def listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def is_builtin(doc: Manifest) -> bool:
    group = str(doc["apiVersion"]).rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def service_ports_on(service: Manifest, port: int, port_name: str) -> list[Manifest]:
    return [
        p
        for p in service["spec"]["ports"]
        if p["port"] == port or p.get("targetPort") in (port, port_name)
    ]


def sets(*assignments: str) -> tuple[str, ...]:
    """``--set`` arguments for helm, one per assignment."""
    return tuple(arg for assignment in assignments for arg in ("--set", assignment))


EXAMPLE_IDS = sorted(EXAMPLES)
EXPOSURE_VARIANTS = {
    "as-is": (),
    "loadbalancer": sets("service.type=LoadBalancer"),
    "nodeport": sets("service.type=NodePort"),
    "ingress": sets("ingress.enabled=true", "ingress.host=node.example", "ingress.fleetHost="),
}


def test_examples_cover_the_three_deployments():
    # Prepare
    expected = {"city-sqlite", "city-postgresql", "aggregator"}

    # Execute
    found = set(EXAMPLES)

    # Assert
    assert expected <= found


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_helm_lint_strict_passes(helm, example):
    # Prepare
    values = EXAMPLES[example]

    # Execute
    result = _run(helm, "lint", "--strict", CHART, "-f", values)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "replicaCount=-1"), "replicaCount: Must be greater than or equal to 1"),
        (("--set", "role=mayor"), 'role: role must be one of the following: "city", "aggregator"'),
        (("--set", "node.participantId=city a"), "node.participantId: Does not match pattern"),
        (("--set", "database.type=mysql"), "database.type: database.type must be one of"),
        (("--set", "service.type=External"), "service.type: service.type must be one of"),
        (("--set", "ports.protocol=70000"), "ports.protocol: Must be less than or equal to 65535"),
        (("--set", "replicas=2"), "Additional property replicas is not allowed"),
    ],
    ids=[
        "negative-replicas",
        "bad-role",
        "bad-participant",
        "bad-db",
        "bad-svc",
        "bad-port",
        "typo",
    ],
)
def test_schema_rejects_wrong_values_with_a_clear_message(helm, args, message):
    # Prepare
    values = EXAMPLES["city-sqlite"]

    # Execute
    result = _template(helm, "-f", values, *args)

    # Assert
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("example", "args", "message"),
    [
        ("city-sqlite", ("--set", "replicaCount=2"), "SQLite allows exactly one replica"),
        (
            "aggregator",
            sets(
                "replicaCount=2",
                "database.type=postgresql",
                "database.postgresql.existingSecret=db",
                "networkPolicy.egress.database.cidrs={10.0.0.1/32}",
            ),
            "an aggregator runs one Flower SuperLink",
        ),
        (
            "city-postgresql",
            ("--set", "networkPolicy.egress.database.cidrs=null"),
            "networkPolicy.egress.database: with PostgreSQL",
        ),
        ("city-postgresql", ("--set", "tls.existingSecret=x"), "not both"),
        ("city-sqlite", ("--set", "node.participantId="), "node.participantId: required"),
        ("city-sqlite", ("--set", "management.adminToken.existingSecret="), "adminToken"),
    ],
    ids=["sqlite-replicas", "aggregator-replicas", "db-egress", "two-tls", "no-id", "no-token"],
)
def test_inconsistent_values_fail_with_a_clear_message(helm, example, args, message):
    # Prepare
    values = EXAMPLES[example]

    # Execute
    result = _template(helm, "-f", values, *args)

    # Assert
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_pods_and_containers_are_locked_down(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    specs = list(pod_specs(docs))

    # Assert
    assert len(specs) == 2, "the node workload and the helm test pod"
    for where, spec in specs:
        pod = spec["securityContext"]
        assert spec["automountServiceAccountToken"] is False, where
        assert pod["runAsNonRoot"] is True, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod.get("runAsUser", 1) != 0, where
        assert not spec.get("hostNetwork"), where
        assert not spec.get("hostPID"), where
        for container in spec["containers"] + spec.get("initContainers", []):
            here = f"{where} container {container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, here
            assert context.get("runAsUser", 1) != 0, here
            assert context["readOnlyRootFilesystem"] is True, here
            assert context["allowPrivilegeEscalation"] is False, here
            assert context.get("privileged", False) is False, here
            assert context["capabilities"] == {"drop": ["ALL"]}, here
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, here
            assert all("hostPort" not in port for port in container.get("ports", [])), here
            assert container["resources"]["limits"]["memory"], here


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_service_account_mounts_no_token(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    accounts = of_kind(docs, "ServiceAccount")

    # Assert
    assert accounts
    assert all(account["automountServiceAccountToken"] is False for account in accounts)
    assert not of_kind(docs, "Role")
    assert not of_kind(docs, "RoleBinding")


@pytest.mark.parametrize("variant", sorted(EXPOSURE_VARIANTS))
@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_management_port_never_leaves_the_cluster(helm, example, variant):
    # Prepare
    docs = render(helm, example, *EXPOSURE_VARIANTS[variant])
    management = container_port(docs, "management")

    # Execute
    exposing = [
        service
        for service in of_kind(docs, "Service")
        if service_ports_on(service, management, "management")
    ]
    ingress_backends = [
        path["backend"]["service"]
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]

    # Assert
    assert exposing, "the management port is on a cluster-internal Service"
    for service in exposing:
        spec = service["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
        assert not spec.get("externalIPs")
        assert not spec.get("externalName")
    exposing_names = {service["metadata"]["name"] for service in exposing}
    for backend in ingress_backends:
        assert backend["name"] not in exposing_names
        assert backend["port"] in ({"name": "protocol"}, {"name": "fleet"})
    if variant == "ingress":
        assert ingress_backends, "the ingress variant renders an Ingress"


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_peer_facing_service_carries_only_peer_ports(helm, example):
    # Prepare
    docs = render(helm, example)
    aggregator = example == "aggregator"

    # Execute
    exposed = [
        service
        for service in of_kind(docs, "Service")
        if service["spec"].get("type", "ClusterIP") != "ClusterIP"
    ]

    # Assert
    for service in exposed:
        names = {port["name"] for port in service["spec"]["ports"]}
        assert names == ({"protocol", "fleet"} if aggregator else {"protocol"})


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_network_policy_is_on_and_tight_by_default(helm, example):
    # Prepare
    docs = render(helm, example)
    policy = one(docs, "NetworkPolicy")
    spec = policy["spec"]
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    peer_ports = {container_port(docs, "protocol")}
    if example == "aggregator":
        peer_ports.add(container_port(docs, "fleet"))
    internal_ports = {container_port(docs, "management"), container_port(docs, "health")}
    if example == "aggregator":
        internal_ports.add(container_port(docs, "flwr-control"))

    # Execute
    rules_for = {
        port: [rule for rule in spec["ingress"] if port in {p["port"] for p in rule["ports"]}]
        for port in peer_ports | internal_ports
    }

    # Assert
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    for rule in spec["ingress"]:
        assert rule.get("ports"), "every ingress rule names its ports"
        if not rule.get("from"):
            assert {p["port"] for p in rule["ports"]} <= peer_ports, "only peer ports are open"
    for port in internal_ports:
        assert rules_for[port], f"port {port} is reachable from the namespace"
        for rule in rules_for[port]:
            assert rule["from"] == [{"podSelector": {}}], f"port {port}: this namespace only"
    for rule in spec["egress"]:
        assert rule.get("to"), "no egress rule to any destination"
        assert rule.get("ports"), "no egress rule to any port"
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert 53 in egress_ports


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_network_policy_egress_lists_database_and_peers(helm, example):
    # Prepare
    docs = render(helm, example)
    values = yaml.safe_load(EXAMPLES[example].read_text(encoding="utf-8"))
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]

    # Execute
    allowed = {
        (peer.get("ipBlock", {}).get("cidr"), port["port"])
        for rule in egress
        for peer in rule["to"]
        for port in rule["ports"]
    }

    # Assert
    for peer in values["networkPolicy"]["egress"]["peers"]:
        assert (peer["cidr"], peer["port"]) in allowed
    if values["database"]["type"] == "postgresql":
        database = values["networkPolicy"]["egress"]["database"]
        assert all((cidr, database["port"]) in allowed for cidr in database["cidrs"])
    else:
        assert all(port != 5432 for _, port in allowed)


def test_network_policy_can_be_disabled(helm):
    # Prepare
    args = ("--set", "networkPolicy.enabled=false")

    # Execute
    docs = render(helm, "city-sqlite", *args)

    # Assert
    assert not of_kind(docs, "NetworkPolicy")


@pytest.mark.parametrize("example", ["city-sqlite", "aggregator"])
def test_sqlite_runs_one_statefulset_replica_on_a_claim(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    statefulset = one(docs, "StatefulSet")
    claims = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in node_container(docs)["volumeMounts"]}

    # Assert
    assert not of_kind(docs, "Deployment")
    assert statefulset["spec"]["replicas"] == 1
    assert [claim["metadata"]["name"] for claim in claims] == ["data"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"]
    assert mounts["data"] == node_config(docs)["node"]["data_dir"]
    assert node_config(docs)["database"]["url"].startswith("sqlite:////var/lib/hanse/")
    service_name = statefulset["spec"]["serviceName"]
    headless = one(docs, "Service", service_name)
    assert headless["spec"]["clusterIP"] == "None"


def test_postgresql_url_comes_only_from_a_secret(helm):
    # Prepare
    docs = render(helm, "city-postgresql")
    pod = workload(docs)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in node_container(docs)["volumeMounts"]}

    # Execute
    config = node_config(docs)
    url_file = Path(config["database"]["url_file"])
    volume = volumes[mounts[str(url_file.parent)]]

    # Assert
    assert workload(docs)["kind"] == "Deployment"
    assert workload(docs)["spec"]["replicas"] == 2
    assert "url" not in config["database"]
    assert volume["secret"]["secretName"] == "city-b-db"
    assert volume["secret"]["items"] == [{"key": "url", "path": url_file.name}]
    for config_map in of_kind(docs, "ConfigMap"):
        text = yaml.safe_dump(config_map["data"])
        assert "postgresql" not in text
        assert "psycopg" not in text
    assert volumes["data"].get("emptyDir") is not None


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_chart_renders_no_secret_values(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    text = node_config_text(docs)

    # Assert
    assert not of_kind(docs, "Secret"), "secrets come from existing Secrets or cert-manager"
    assert "BEGIN" not in text
    assert "PRIVATE KEY" not in text
    assert "://" not in text.replace("sqlite:////", "")


def test_aggregator_has_superlink_ports(helm):
    # Prepare
    docs = render(helm, "aggregator")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}

    # Execute
    fleet = container_port(docs, "fleet")
    control = container_port(docs, "flwr-control")
    peer_service = services[f"{RELEASE}-hanse-node"]
    internal_service = services[f"{RELEASE}-hanse-node-internal"]

    # Assert
    assert (fleet, control) == (8000, 9093)
    assert {"name": "fleet", "port": fleet} in [
        {"name": p["name"], "port": p["port"]} for p in peer_service["spec"]["ports"]
    ]
    assert service_ports_on(internal_service, control, "flwr-control")
    assert not service_ports_on(peer_service, control, "flwr-control")
    assert internal_service["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("example", ["city-sqlite", "city-postgresql"])
def test_city_has_no_superlink_ports(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    names = {port["name"] for port in node_container(docs)["ports"]}

    # Assert
    assert names == {"protocol", "management", "health", "metrics"}


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_probes_are_native_grpc_on_the_health_port(helm, example):
    # Prepare
    docs = render(helm, example)
    container = node_container(docs)

    # Execute
    health = container_port(docs, "health")

    # Assert
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": health}, probe
    assert listen_port(node_config(docs)["health"]["listen"]) == health


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_rendered_node_config_passes_the_node_schema(helm, example, tmp_path):
    # Prepare
    docs = render(helm, example)
    path = tmp_path / "config.yaml"
    path.write_text(node_config_text(docs), encoding="utf-8")

    # Execute
    loaded = load_config(path)

    # Assert
    values = yaml.safe_load(EXAMPLES[example].read_text(encoding="utf-8"))
    assert loaded.model.node.participant_id == values["node"]["participantId"]
    assert [p.participant_id for p in loaded.model.peers] == [
        p["participantId"] for p in values["peers"]
    ]
    assert [d.id for d in loaded.model.datasets] == [d["id"] for d in values.get("datasets", [])]


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_rendered_node_config_passes_hanse_config_check(helm, example, tmp_path):
    # Prepare
    docs = render(helm, example)
    path = tmp_path / "config.yaml"
    path.write_text(node_config_text(docs), encoding="utf-8")

    # Execute
    result = _run(sys.executable, "-m", "node", "config", "check", "--schema-only", path)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{path}: ok" in result.stdout


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_node_config_matches_ports_and_mounts(helm, example):
    # Prepare
    docs = render(helm, example)
    config = node_config(docs)
    container = node_container(docs)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]

    # Execute
    files = [
        config["tls"]["cert"],
        config["tls"]["key"],
        config["tls"]["trust_bundle"],
        config["management"]["admin_token_file"],
        config["database"].get("url_file"),
    ]
    config_file = container["args"][container["args"].index("--config") + 1]

    # Assert
    assert container["args"][:2] == ["node", "start"]
    assert any(config_file == f"{m}/config.yaml" for m in mounts)
    for section in ("protocol", "management", "health", "metrics"):
        assert listen_port(config[section]["listen"]) == container_port(docs, section)
    for file in filter(None, files):
        assert str(Path(file).parent) in mounts, file
    assert config["node"]["data_dir"] in mounts
    assert "/tmp" in mounts


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_helm_test_hook_calls_node_health(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    pod = one(docs, "Pod")
    container = pod["spec"]["containers"][0]
    internal = one(docs, "Service", f"{RELEASE}-hanse-node-internal")

    # Assert
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["image"] == node_container(docs)["image"]
    assert container["args"] == [
        "health",
        f"{internal['metadata']['name']}:{container_port(docs, 'health')}",
        "--plaintext",
    ]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] != "node"


@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_only_known_custom_resources_are_rendered(helm, example):
    # Prepare
    docs = render(helm, example)

    # Execute
    custom = {(doc["apiVersion"], doc["kind"]) for doc in docs if not is_builtin(doc)}

    # Assert
    assert custom <= CRD_KINDS, "a new custom resource needs shape checks here"


def test_cert_manager_certificate_names_the_participant(helm):
    # Prepare
    docs = render(helm, "city-postgresql")
    tls_volume = next(
        v for v in workload(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"
    )

    # Execute
    certificate = one(docs, "Certificate")
    spec = certificate["spec"]

    # Assert
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert set(spec) <= {
        "secretName",
        "secretTemplate",
        "duration",
        "renewBefore",
        "uris",
        "dnsNames",
        "ipAddresses",
        "usages",
        "privateKey",
        "issuerRef",
    }
    assert spec["uris"] == ["urn:hanse:city-b"]
    assert spec["dnsNames"] == ["hanse.city-b.example"]
    assert spec["ipAddresses"] == ["127.0.0.1"]
    assert spec["secretName"] == tls_volume["secret"]["secretName"]
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert spec["issuerRef"] == {
        "name": "hanse-federation",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    assert spec["duration"].endswith("h")
    assert spec["renewBefore"].endswith("h")


def test_service_monitor_scrapes_the_internal_metrics_port(helm):
    # Prepare
    docs = render(helm, "city-postgresql")

    # Execute
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s for s in of_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]

    # Assert
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert len(selected) == 1
    assert selected[0]["spec"]["type"] == "ClusterIP"
    assert "metrics" in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


@pytest.fixture(scope="session")
def kubernetes_validate() -> list[str]:
    if importlib.util.find_spec("kubernetes_validate") is None:
        _missing("kubernetes-validate is not installed: pip install 'kubernetes-validate==1.37.0'")
    return [sys.executable, "-m", "kubernetes_validate"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLE_IDS)
def test_builtin_kinds_validate_strictly(helm, kubernetes_validate, example, version, tmp_path):
    # Prepare
    docs = [doc for doc in render(helm, example) if is_builtin(doc)]
    path = tmp_path / f"{example}.yaml"
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")

    # Execute
    result = _run(*kubernetes_validate, "--strict", "-k", version, path)

    # Assert
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output, output
    assert "ERROR" not in output, output
    assert output.count("passed for resource") == len(docs), output


OPTION_VARIANTS = {
    "aggregator-ingress": (
        "aggregator",
        sets(
            "ingress.enabled=true",
            "ingress.host=agg.example",
            "ingress.fleetHost=fleet.agg.example",
        ),
    ),
    "ipv6-no-metrics": (
        "city-sqlite",
        sets("node.listenHost=::", "metrics.enabled=false", "serviceAccount.create=false"),
    ),
    "configmap-data-digest": (
        "city-sqlite",
        sets(
            "datasetsVolume.existingClaim=",
            "datasetsVolume.configMap=open-data",
            "image.digest=sha256:" + "0" * 64,
        ),
    ),
    "nodeport-minimal": (
        "city-postgresql",
        sets(
            "service.type=NodePort",
            "podDisruptionBudget.enabled=false",
            "metrics.serviceMonitor.enabled=false",
        ),
    ),
    "extra-config": ("city-sqlite", ("--set-json", 'extraConfig={"log":{"level":"debug"}}')),
}


@pytest.mark.parametrize("variant", sorted(OPTION_VARIANTS))
def test_options_render_valid_manifests_and_config(helm, kubernetes_validate, variant, tmp_path):
    # Prepare
    example, args = OPTION_VARIANTS[variant]
    docs = render(helm, example, *args)
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all([d for d in docs if is_builtin(d)]), encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(node_config_text(docs), encoding="utf-8")

    # Execute
    result = _run(*kubernetes_validate, "--strict", "-k", KUBERNETES_VERSIONS[-1], manifests)
    loaded = load_config(config)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert loaded.model.node.participant_id


def test_aggregator_config_turns_the_aggregator_role_on_at_the_fleet_port(helm):
    # Execute
    aggregator = node_config(render(helm, "aggregator"))
    city = node_config(render(helm, "city-sqlite"))

    # Assert
    values = yaml.safe_load(EXAMPLES["aggregator"].read_text(encoding="utf-8"))
    fleet_port = values.get("superlink", {}).get("fleetPort", 8000)
    assert aggregator["aggregator"]["enabled"] is True
    assert listen_port(aggregator["aggregator"]["listen"]) == fleet_port
    assert "aggregator" not in city
    fleets = {p["participant_id"]: p.get("fleet_address") for p in city["peers"]}
    assert fleets == {
        "urn:hanse:city-b": None,
        "urn:hanse:research-aggregator": "fleet.research.example:8000",
    }


MEMBER_PEERS = [
    {
        "name": "city-b",
        "participantId": "urn:hanse:city-b",
        "address": "hanse.city-b.example:443",
        "memberships": ["urn:hanse:group:eu-cities", "urn:hanse:group:coastal"],
    },
    {"name": "city-c", "participantId": "urn:hanse:city-c", "address": "hanse.city-c.example:443"},
]


def test_peer_memberships_reach_the_node_config(helm, tmp_path):
    # Prepare
    peers = ("--set-json", f"peers={json.dumps(MEMBER_PEERS)}")

    # Execute
    docs = render(helm, "city-sqlite", *peers)
    path = tmp_path / "config.yaml"
    path.write_text(node_config_text(docs), encoding="utf-8")
    loaded = load_config(path)

    # Assert
    rendered = {p["participant_id"]: p.get("memberships") for p in node_config(docs)["peers"]}
    assert rendered == {
        "urn:hanse:city-b": ["urn:hanse:group:eu-cities", "urn:hanse:group:coastal"],
        "urn:hanse:city-c": None,
    }
    assert loaded.model.peer_memberships() == {
        "urn:hanse:city-b": frozenset({"urn:hanse:group:eu-cities", "urn:hanse:group:coastal"})
    }


@pytest.mark.parametrize(
    ("memberships", "message"),
    [
        ([""], "peers.0.memberships.0: Does not match pattern"),
        ([" urn:hanse:group:eu-cities"], "peers.0.memberships.0: Does not match pattern"),
        (["urn:hanse:group:a", "urn:hanse:group:a"], "peers.0.memberships: array items"),
        ([5], "peers.0.memberships.0: Invalid type. Expected: string"),
        ("urn:hanse:group:a", "peers.0.memberships: Invalid type. Expected: array"),
    ],
    ids=["empty", "spaces", "duplicate", "number", "not-a-list"],
)
def test_schema_rejects_bad_peer_memberships(helm, memberships, message):
    # Prepare
    peer = {**MEMBER_PEERS[0], "memberships": memberships}

    # Execute
    result = _template(
        helm, "-f", EXAMPLES["city-sqlite"], "--set-json", f"peers={json.dumps([peer])}"
    )

    # Assert
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr
