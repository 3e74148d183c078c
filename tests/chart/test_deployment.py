"""The Deployment: restricted security context, probes, /tmp, HA scheduling, and the configuration
contract of docs/architecture.md (chart value -> HOTPLUG_AGENT_* environment variable), row by row."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import VARIANTS, render_variant
from tests.chart.helm import CHART, NAMESPACE, Helm, Rendered

pytestmark = pytest.mark.tools  # helm (hack/tools/install-helm.sh, $HELM or PATH)

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def container(rendered: Rendered) -> dict[str, Any]:
    containers = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(rendered: Rendered) -> dict[str, Any]:
    env = container(rendered)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def contract_rows() -> list[tuple[str, str, str, str]]:
    """(flag, env, chart value, default) rows of the configuration names table."""
    rows = []
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`HOTPLUG_AGENT_"):
            rows.append((cells[0], cells[1].strip("`"), cells[2], cells[3]))
    assert len(rows) >= 25, "the configuration table of docs/architecture.md was not found"
    return rows


def chart_rows() -> list[tuple[str, str, str]]:
    """(env, dotted chart value, documented default) for the rows that name a chart value."""
    out = []
    for _flag, env, value, default in contract_rows():
        match = re.fullmatch(r"`([A-Za-z.]+)`", value)
        if match:
            out.append((env, match.group(1), default))
    return out


def lookup(path: str, tree: dict[str, Any]) -> Any:
    node: Any = tree
    for part in path.split("."):
        node = node[part]
    return node


def schema_of(path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return node


def changed(path: str, default: Any) -> tuple[str, str]:
    """A --set for `path` with a valid non-default value, and the env value it must produce."""
    schema = schema_of(path)
    if isinstance(default, bool):
        return f"{path}={str(not default).lower()}", str(not default).lower()
    if isinstance(default, list):
        return f"{path}={{ns-x,ns-y}}", "ns-x,ns-y"
    if "enum" in schema:
        other = next(v for v in schema["enum"] if v != default)
        return f"{path}={other}", other
    if schema.get("type") == "integer":
        new = default + 3
        return f"{path}={new}", str(new)
    if schema.get("type") == "number":  # rendered with --set-json (see the test)
        return f"{path}={default + 1.5}", str(default + 1.5)
    return f"{path}=changed-{path.rsplit('.', 1)[-1].lower()}", f"changed-{path.rsplit('.', 1)[-1].lower()}"


@pytest.mark.parametrize(("env", "path", "_default"), chart_rows(), ids=[r[0] for r in chart_rows()])
def test_each_chart_value_reaches_its_env_var(helm: Helm, env: str, path: str, _default: str) -> None:
    default = lookup(path, VALUES)
    set_value, expected = changed(path, default)
    extra = ("replicaCount=1",) if path == "leaderElection.enabled" else ()
    if schema_of(path).get("type") == "number":
        rendered = helm.render(set_values=extra, set_json=(set_value,))
    else:
        rendered = helm.render(set_values=(set_value, *extra))
    if path == "metrics.port":
        port = int(expected)
        assert env_of(rendered)[env] == f"0.0.0.0:{port}"
        assert container(rendered)["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    else:
        assert env_of(rendered)[env] == expected


@pytest.mark.parametrize(("env", "path", "documented"), chart_rows(), ids=[r[0] for r in chart_rows()])
def test_chart_defaults_match_the_contract(default: Rendered, env: str, path: str, documented: str) -> None:
    value = lookup(path, VALUES)
    first = documented.split(maxsplit=1)[0].strip("`,")
    if isinstance(value, list) or value == "":
        assert value in ([], "") and first in ("all", "none"), (path, value, documented)
        assert env not in env_of(default)
    elif path == "metrics.port":
        assert documented.strip("`").endswith(f":{value}")
        assert env_of(default)[env] == f"0.0.0.0:{value}"
    else:
        assert first == (str(value).lower() if isinstance(value, bool) else str(value)), (path, documented)
        assert env_of(default)[env] == first


def test_rows_without_a_chart_value_are_set_from_the_pod(default: Rendered) -> None:
    env = env_of(default)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["HOTPLUG_AGENT_IDENTITY"] == "$(POD_NAME)"
    assert env["HOTPLUG_AGENT_LEASE_NAMESPACE"] == NAMESPACE
    assert "HOTPLUG_AGENT_KUBECONFIG" not in env  # in-cluster configuration
    contract = {row[1] for row in contract_rows()}
    unknown = {name for name in env if name.startswith("HOTPLUG_AGENT_")} - contract
    assert unknown == set(), "env vars the CLI does not define"


def test_container_runs_the_agent(default: Rendered) -> None:
    c = container(default)
    assert c["args"] == ["run"]
    assert "command" not in c  # the image's ENTRYPOINT is hotplug-agent
    assert c["image"] == "ghcr.io/hotplug-agent/hotplug-agent:0.1.0"


def test_restricted_security_context(rendered: Rendered) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert isinstance(psc["runAsGroup"], int) and psc["runAsGroup"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container(rendered)["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["runAsUser"] == 65532 and csc["runAsGroup"] == 65532
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc.get("privileged", False) is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


def test_writable_tmp_and_nothing_else(rendered: Rendered) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert container(rendered)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "emptyDir" in pod["volumes"][0]


def test_probes_on_the_metrics_port(rendered: Rendered) -> None:
    c = container(rendered)
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(port_names) == {"metrics"}
    for probe, path in (
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    env = env_of(rendered)
    assert env["HOTPLUG_AGENT_LISTEN_ADDRESS"] == f"0.0.0.0:{port_names['metrics']}"


def test_resources_set(rendered: Rendered) -> None:
    resources = container(rendered)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_two_replicas_with_leader_election_by_default(default: Rendered) -> None:
    deployment = default.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert env_of(default)["HOTPLUG_AGENT_LEADER_ELECT"] == "true"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "hotplug-agent", "app.kubernetes.io/instance": "hotplug"}
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == selector
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    pdb = default.one("PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": selector},
    }


def test_termination_grace_exceeds_shutdown_grace(rendered: Rendered) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    shutdown = int(env_of(rendered)["HOTPLUG_AGENT_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > shutdown


def test_single_replica_without_leader_election(helm: Helm) -> None:
    rendered = render_variant(helm, "single-replica-no-leader-election")
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = env_of(rendered)
    assert env["HOTPLUG_AGENT_LEADER_ELECT"] == "false"
    assert not {"HOTPLUG_AGENT_LEASE_NAME", "HOTPLUG_AGENT_LEASE_NAMESPACE"} & set(env)
    pod = deployment["spec"]["template"]["spec"]
    assert "affinity" not in pod and "topologySpreadConstraints" not in pod


def test_hardened_variant(helm: Helm) -> None:
    rendered = render_variant(helm, "hardened")
    c = container(rendered)
    assert c["image"] == (
        "registry.example.com/kubevirt/hotplug-agent@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert all(o["metadata"]["labels"]["team"] == "virt-platform" for o in rendered.objects)
    env = env_of(rendered)
    assert env["HOTPLUG_AGENT_DRY_RUN"] == "true" and env["HOTPLUG_AGENT_CREATES_PER_SECOND"] == "0.5"
    assert env["HTTPS_PROXY"] == ""
    policy = rendered.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    service = rendered.one("Service")["spec"]
    assert service["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pdb = rendered.one("PodDisruptionBudget")["spec"]
    assert (pdb["minAvailable"], pdb["unhealthyPodEvictionPolicy"]) == (1, "IfHealthyBudget")
    assert "maxUnavailable" not in pdb
    policy = rendered.one("ValidatingAdmissionPolicy")
    binding = rendered.one("ValidatingAdmissionPolicyBinding")["spec"]
    assert binding == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    sa = rendered.one("ServiceAccount")["metadata"]
    (condition,) = policy["spec"]["matchConditions"]
    assert f'"system:serviceaccount:{sa["namespace"]}:{sa["name"]}"' in condition["expression"]


def test_pdb_policy_can_be_left_to_the_api_server(helm: Helm) -> None:
    rendered = helm.render(set_values=("podDisruptionBudget.unhealthyPodEvictionPolicy=",))
    assert "unhealthyPodEvictionPolicy" not in rendered.one("PodDisruptionBudget")["spec"]


def test_admission_policy_off_by_default_and_scoped_to_watched_namespaces(helm: Helm) -> None:
    assert not render_variant(helm, "default").of_kind("ValidatingAdmissionPolicy")
    rendered = helm.render(VARIANTS["watch-namespaces"], set_values=("admissionPolicy.enabled=true",))
    binding = rendered.one("ValidatingAdmissionPolicyBinding")["spec"]
    (expression,) = binding["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expression == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["tenant-a", "tenant-b"],
    }


def test_pdb_only_with_several_replicas(helm: Helm) -> None:
    assert not helm.render(set_values=("replicaCount=1",)).of_kind("PodDisruptionBudget")
    assert not helm.render(set_values=("podDisruptionBudget.enabled=false",)).of_kind("PodDisruptionBudget")
