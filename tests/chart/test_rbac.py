"""The chart's RBAC renders as intended in every variant: where each rule is granted (ClusterRole, Roles
per watched namespace, the Lease Role). That these are exactly the verbs the agent calls is derived
from the code in ``test_rbac_used.py``.

Rules are flattened into (scope, apiGroup, resource, verb, resourceName) tuples so that the comparison
is with *sets*: nothing missing, nothing extra, however the rules happen to be grouped.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import render_variant
from tests.chart.helm import NAMESPACE, Helm, Rendered

pytestmark = pytest.mark.tools  # helm (hack/tools/install-helm.sh, $HELM or PATH)

Grant = tuple[str, str, str, str, str]  # scope ("cluster" or a namespace), group, resource, verb, name

#: Cluster-wide in every layout: the KubeVirt CR, and the nodes and pods the preflight reads.
KUBEVIRT_CONFIG = {
    (g, r, v, "")
    for g, r in (("kubevirt.io", "kubevirts"), ("", "nodes"), ("", "pods"))
    for v in ("list", "watch")
}
WORKLOAD = (
    {
        ("kubevirt.io", r, v, "")
        for r in ("virtualmachines", "virtualmachineinstances")
        for v in ("get", "list", "watch")
    }
    | {
        ("kubevirt.io", "virtualmachineinstancemigrations", v, "")
        for v in ("list", "watch", "create", "delete")
    }
    | {("apps", "controllerrevisions", "get", ""), ("", "events", "create", "")}
    | {("k8s.cni.cncf.io", "network-attachment-definitions", v, "") for v in ("list", "watch")}
)
LEASE = {
    ("coordination.k8s.io", "leases", "create", ""),
    ("coordination.k8s.io", "leases", "get", "hotplug-agent"),
    ("coordination.k8s.io", "leases", "update", "hotplug-agent"),
}


def scoped(scope: str, grants: set[tuple[str, str, str, str]]) -> set[Grant]:
    return {(scope, *g) for g in grants}


def flatten(rules: list[dict[str, Any]], scope: str) -> set[Grant]:
    out: set[Grant] = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        names = rule.get("resourceNames") or [""]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((scope, group, resource, verb, name))
    return out


def grants(rendered: Rendered) -> set[Grant]:
    """Everything the agent's ServiceAccount is granted, through the bindings that name it."""
    sa = rendered.one("ServiceAccount")["metadata"]
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in rendered.objects
        if o["kind"] in ("ClusterRole", "Role")
    }
    out: set[Grant] = set()
    for binding in rendered.objects:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        namespace = binding["metadata"].get("namespace")
        key = (ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])
        assert key in roles, f"{binding['kind']} {binding['metadata']['name']} refers to missing {key}"
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else str(namespace)
        out |= flatten(roles[key]["rules"], scope)
    return out


def all_rules(rendered: Rendered) -> list[dict[str, Any]]:
    return [r for o in rendered.objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]


def test_default_grants_exactly(default: Rendered) -> None:
    assert grants(default) == scoped("cluster", KUBEVIRT_CONFIG | WORKLOAD) | scoped(NAMESPACE, LEASE)


def test_watch_namespaces_grants_exactly(helm: Helm) -> None:
    rendered = render_variant(helm, "watch-namespaces")
    assert grants(rendered) == (
        scoped("cluster", KUBEVIRT_CONFIG)
        | scoped("tenant-a", WORKLOAD)
        | scoped("tenant-b", WORKLOAD)
        | scoped(NAMESPACE, LEASE)
    )
    env = {
        e["name"]: e.get("value")
        for e in rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HOTPLUG_AGENT_NAMESPACES"] == "tenant-a,tenant-b"
    assert env["HOTPLUG_AGENT_EXCLUDE_NAMESPACES"] == "tenant-b-frozen"


def test_no_lease_permissions_without_leader_election(helm: Helm) -> None:
    rendered = render_variant(helm, "single-replica-no-leader-election")
    assert grants(rendered) == scoped("cluster", KUBEVIRT_CONFIG | WORKLOAD)


def test_lease_role_follows_lease_name(helm: Helm) -> None:
    rendered = helm.render(set_values=("leaderElection.leaseName=my-lease",))
    lease = {g for g in grants(rendered) if g[2] == "leases"}
    assert lease == {
        (NAMESPACE, "coordination.k8s.io", "leases", "create", ""),
        (NAMESPACE, "coordination.k8s.io", "leases", "get", "my-lease"),
        (NAMESPACE, "coordination.k8s.io", "leases", "update", "my-lease"),
    }


def test_rbac_create_false_renders_no_rbac(helm: Helm) -> None:
    rendered = helm.render(set_values=("rbac.create=false",))
    assert not [o for o in rendered.objects if o["kind"].endswith(("Role", "RoleBinding"))]


@pytest.mark.parametrize("variant", ["default", "watch-namespaces", "monitoring-on", "hardened"])
def test_no_wildcards_no_secrets_no_escalation(helm: Helm, variant: str) -> None:
    for rule in all_rules(render_variant(helm, variant)):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        assert not set(rule["resources"]) & {"secrets", "configmaps", "pods/exec"}, rule
        if set(rule["resources"]) & {"pods", "nodes", "network-attachment-definitions"}:
            assert set(rule["verbs"]) <= {"list", "watch"}, rule  # the preflight's informers only
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "deletecollection"}, rule
        # Status subresources and the VM/VMI objects themselves are never written.
        for resource in rule["resources"]:
            assert "/" not in resource, rule
        if set(rule["resources"]) & {"virtualmachines", "virtualmachineinstances", "kubevirts"}:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_pod_uses_the_bound_service_account(default: Rendered) -> None:
    pod = default.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == default.one("ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
