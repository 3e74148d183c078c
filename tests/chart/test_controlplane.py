"""The chart against a real kube-apiserver (the controlplane tier: kube-apiserver + etcd built from their
Go modules, RBAC enforced; see tests/controlplane/cluster.py).

* Every rendered object of every variant is accepted by the API server (``dryRun=All``,
  ``fieldValidation=Strict``), the ServiceMonitor and PrometheusRule through the prometheus-operator
  CRDs installed from their Go module.
* The chart's RBAC, applied for real, grants the agent's ServiceAccount exactly the permissions of
  tests/chart/test_rbac.py and nothing else, checked exhaustively with SubjectAccessReviews over every
  verb on every resource the agent touches (and a few it must never touch).

The cluster is this module's own (not the session-shared one), so the extra CRDs and RBAC objects never
leak into the conformance or controlplane suites.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from tests.chart import schemas
from tests.chart.conftest import VARIANTS
from tests.chart.helm import Helm, Rendered
from tests.chart.test_rbac import KUBEVIRT_CONFIG, LEASE, WORKLOAD
from tests.controlplane.cluster import KUBEVIRT_CRDS, ControlPlane, ensure_binaries

pytestmark = [pytest.mark.controlplane, pytest.mark.tools]

RELEASE_NAMESPACE = "hotplug-agent"
# kind -> (API path prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules", True),
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Every resource the agent touches, and some it must never touch.
RESOURCES_TO_PROBE = (
    ("kubevirt.io", "virtualmachines"),
    ("kubevirt.io", "virtualmachineinstances"),
    ("kubevirt.io", "virtualmachineinstancemigrations"),
    ("kubevirt.io", "kubevirts"),
    ("apps", "controllerrevisions"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("", "secrets"),
    ("", "configmaps"),
    ("", "pods"),
    ("", "nodes"),
    ("k8s.cni.cncf.io", "network-attachment-definitions"),
    ("", "namespaces"),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(ensure_binaries(), tmp_path_factory.mktemp("chart-controlplane"))
    try:
        cp.start()
        root = schemas.go_module_dir(
            "github.com/prometheus-operator/prometheus-operator", schemas.PROMETHEUS_OPERATOR_VERSION
        )
        crd_dir = root / "example" / "prometheus-operator-crd"
        cp.install_crds(crd_dir / name for name in schemas.PROMETHEUS_OPERATOR_CRDS.values())
        yield cp
    finally:
        cp.stop()


def ensure_namespace(cluster: ControlPlane, name: str) -> None:
    res = cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert res.status in (201, 409), res.body[:500]


def collection(obj: dict[str, Any]) -> str:
    prefix, plural, namespaced = RESOURCES[obj["kind"]]
    if namespaced:
        return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}"
    return f"{prefix}/{plural}"


def create(cluster: ControlPlane, obj: dict[str, Any], dry_run: bool) -> None:
    if RESOURCES[obj["kind"]][2]:
        ensure_namespace(cluster, obj["metadata"]["namespace"])
    query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    res = cluster.request("POST", collection(obj) + query, obj)
    assert res.status == 201, (
        f"{obj['kind']}/{obj['metadata']['name']}: HTTP {res.status} {res.body[:1000]!r}"
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_api_server_accepts_every_object(cluster: ControlPlane, helm: Helm, variant: str) -> None:
    rendered = helm.render(VARIANTS[variant], namespace=RELEASE_NAMESPACE)
    for obj in rendered.objects:
        create(cluster, obj, dry_run=True)


def allowed(
    cluster: ControlPlane, sa: str, verb: str, group: str, resource: str, namespace: str, name: str = ""
) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{RELEASE_NAMESPACE}:{sa}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{RELEASE_NAMESPACE}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": resource,
                "name": name,
            },
        },
    }
    res = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert res.status == 201, res.body[:500]
    return bool(res.json()["status"].get("allowed", False))


def install(cluster: ControlPlane, helm: Helm, name: str, *set_values: str) -> Rendered:
    rendered = helm.render(set_values=(f"fullnameOverride={name}", *set_values), namespace=RELEASE_NAMESPACE)
    for obj in rendered.objects:
        if obj["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            create(cluster, obj, dry_run=False)
    return rendered


def observed_grants(
    cluster: ControlPlane, sa: str, namespaces: tuple[str, ...], names: tuple[str, ...]
) -> set[tuple[str, str, str, str, str]]:
    """(scope, group, resource, verb, name) the API server allows; scope "" = all namespaces."""
    out = set()
    for namespace, (group, resource), verb, name in product(namespaces, RESOURCES_TO_PROBE, VERBS, names):
        if name and verb in ("list", "watch", "create", "deletecollection"):
            continue  # verbs on collections have no name
        if allowed(cluster, sa, verb, group, resource, namespace, name):
            out.add((namespace, group, resource, verb, name))
    return out


def expected_grants(
    grants_by_scope: dict[str, set[tuple[str, str, str, str]]],
    namespaces: tuple[str, ...],
    names: tuple[str, ...],
) -> set[tuple[str, str, str, str, str]]:
    """What the rules imply for each probed (namespace, name): cluster rules hold everywhere, a rule
    with a resourceName only for that name, a rule without one for every name and for collections."""
    out = set()
    for scope, grants in grants_by_scope.items():
        targets = namespaces if scope == "cluster" else (scope,)
        for namespace, (group, resource, verb, rule_name), name in product(targets, grants, names):
            if name and verb in ("list", "watch", "create", "deletecollection"):
                continue
            if rule_name and rule_name != name:
                continue
            out.add((namespace, group, resource, verb, name))
    return out


def test_rbac_grants_exactly_all_namespaces(cluster: ControlPlane, helm: Helm) -> None:
    rendered = install(cluster, helm, "agent-all")
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    namespaces = ("", RELEASE_NAMESPACE, "tenant-x")
    names = ("", "hotplug-agent", "other")
    expected = expected_grants(
        {"cluster": KUBEVIRT_CONFIG | WORKLOAD, RELEASE_NAMESPACE: LEASE}, namespaces, names
    )
    assert observed_grants(cluster, sa, namespaces, names) == expected


def test_rbac_grants_exactly_watch_namespaces(cluster: ControlPlane, helm: Helm) -> None:
    rendered = install(
        cluster,
        helm,
        "agent-some",
        "watchNamespaces={tenant-a,tenant-b}",
        "leaderElection.leaseName=agent-some",
    )
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    namespaces = ("", RELEASE_NAMESPACE, "tenant-a", "tenant-b", "tenant-x")
    names = ("", "agent-some", "hotplug-agent")
    lease = {(g, r, v, "agent-some" if n else "") for g, r, v, n in LEASE}
    expected = expected_grants(
        {"cluster": KUBEVIRT_CONFIG, "tenant-a": WORKLOAD, "tenant-b": WORKLOAD, RELEASE_NAMESPACE: lease},
        namespaces,
        names,
    )
    assert observed_grants(cluster, sa, namespaces, names) == expected


def test_api_server_rejects_what_the_chart_must_not_render(cluster: ControlPlane, helm: Helm) -> None:
    """The checks above can fail: an unknown field and a non-restricted pod are refused."""
    rendered = helm.render(namespace=RELEASE_NAMESPACE)
    deployment = rendered.one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    res = cluster.request("POST", collection(deployment) + "?fieldValidation=Strict&dryRun=All", deployment)
    assert res.status == 400 and b"bogusField" in res.body, res.body[:500]
    # Pod Security Admission "restricted" (namespace label) admits the chart's pod template as is.
    ensure_namespace(cluster, "restricted-ns")
    patch = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    res = cluster.request("PATCH", "/api/v1/namespaces/restricted-ns", patch, "application/merge-patch+json")
    assert res.status == 200, res.body[:500]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "agent", "namespace": "restricted-ns"},
        "spec": helm.render(namespace=RELEASE_NAMESPACE).one("Deployment")["spec"]["template"]["spec"],
    }
    res = cluster.request(
        "POST", "/api/v1/namespaces/restricted-ns/pods?dryRun=All&fieldValidation=Strict", pod
    )
    assert res.status == 201, res.body[:1000]
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    res = cluster.request("POST", "/api/v1/namespaces/restricted-ns/pods?dryRun=All", pod)
    assert res.status == 403 and b"allowPrivilegeEscalation" in res.body, res.body[:1000]


def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.parametrize("watch", ["all-namespaces", "watch-namespaces"])
def test_agent_runs_with_exactly_the_chart_rbac(
    cluster: ControlPlane, helm: Helm, tmp_path: Path, watch: str
) -> None:
    """`hotplug-agent run`, configured by the rendered Deployment's environment and authenticated as the
    chart's ServiceAccount (nothing more), syncs its caches, takes the Lease and never gets a 403: the
    RBAC is not only minimal but sufficient, with the ClusterRole and with per-namespace Roles."""
    cluster.install_crds(KUBEVIRT_CRDS)
    ensure_namespace(cluster, "kubevirt")
    kubevirt = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"workloadUpdateStrategy": {}},
    }
    res = cluster.request("POST", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts", kubevirt)
    assert res.status in (201, 409), res.body[:500]
    kubevirt = cluster.request("GET", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt").json()
    kubevirt["status"] = {"phase": "Deployed", "observedKubeVirtVersion": "v1.5.2"}
    res = cluster.request(
        "PUT", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt/status", kubevirt
    )
    assert res.status == 200, res.body[:500]

    release = f"agent-{watch}"
    extra = ("watchNamespaces={e2e-a,e2e-b}",) if watch == "watch-namespaces" else ()
    for namespace in ("e2e-a", "e2e-b"):
        ensure_namespace(cluster, namespace)
    rendered = install(cluster, helm, release, f"leaderElection.leaseName={release}", *extra)
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    kubeconfig = cluster.make_user(
        f"system:serviceaccount:{RELEASE_NAMESPACE}:{sa}",
        ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NAMESPACE}"],
    )
    pod_name = f"{release}-0"
    port = free_local_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "POD_NAME": pod_name}
    env["POD_NAMESPACE"] = RELEASE_NAMESPACE
    for var in rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in var:
            env[var["name"]] = var["value"].replace("$(POD_NAME)", pod_name)
    env["HOTPLUG_AGENT_LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    env["HOTPLUG_AGENT_KUBECONFIG"] = str(kubeconfig)
    binary = Path(sys.executable).parent / "hotplug-agent"
    assert binary.exists(), "hotplug-agent is not installed in the venv (pip install -e .)"
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(binary), "run"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = http_get(f"http://127.0.0.1:{port}/readyz")
            lease = cluster.request(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{RELEASE_NAMESPACE}/leases/{release}"
            )
            if (
                status == 200
                and lease.status == 200
                and lease.json()["spec"].get("holderIdentity") == pod_name
            ):
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"the agent exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
        assert status == 200, f"/readyz never answered 200:\n{log.read_text()[-4000:]}"
        assert lease.status == 200 and lease.json()["spec"]["holderIdentity"] == pod_name, log.read_text()[
            -4000:
        ]
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert re.search(r"^hotplug_agent_leader(\{\})? 1(\.0)?$", metrics, re.MULTILINE), metrics[-2000:]
        assert re.search(r"^hotplug_agent_cache_synced(\{\})? 1(\.0)?$", metrics, re.MULTILINE), metrics[
            -2000:
        ]
        forbidden = re.findall(
            r'^hotplug_agent_api_errors_total\{[^}]*code="403"[^}]*\} ([0-9.e+]+)$', metrics, re.MULTILINE
        )
        assert all(float(v) == 0 for v in forbidden), f"403s from the API:\n{log.read_text()[-4000:]}"
        assert "forbidden" not in log.read_text().lower(), log.read_text()[-4000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=int(env["HOTPLUG_AGENT_SHUTDOWN_GRACE_SECONDS"]) + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"exit code {proc.returncode} after SIGTERM:\n{log.read_text()[-4000:]}"


def as_user(cluster: ControlPlane, creds: Any, method: str, path: str) -> tuple[int, bytes]:
    """One request with a client certificate (not the admin's)."""
    req = urllib.request.Request(f"{cluster.url}{path}", method=method)
    req.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(req, context=cluster.ssl_context(creds), timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_admission_policy_lets_the_agent_delete_only_its_own_migrations(
    cluster: ControlPlane, helm: Helm
) -> None:
    """The chart's ValidatingAdmissionPolicy on kube-apiserver v1.34: the agent's ServiceAccount deletes a
    migration labelled as its own, is refused another one (403 with the policy's message), and everyone
    else (here the admin) is not affected."""
    cluster.install_crds(KUBEVIRT_CRDS)
    release = "agent-vap"
    rendered = install(
        cluster, helm, release, "admissionPolicy.enabled=true", f"leaderElection.leaseName={release}"
    )
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        create(cluster, rendered.one(kind), dry_run=False)
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    creds = cluster.pki.client(
        f"system:serviceaccount:{RELEASE_NAMESPACE}:{sa}",
        ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NAMESPACE}"],
    )
    namespace = "vap-tenant"
    ensure_namespace(cluster, namespace)
    base = f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstancemigrations"

    def vmim(name: str, labels: dict[str, str]) -> None:
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"vmiName": "vm-1"},
        }
        res = cluster.request("POST", base, body)
        assert res.status == 201, res.body[:500]

    vmim("ours", {"app.kubernetes.io/managed-by": "hotplug-agent", "kubevirt.io/vmi-name": "vm-1"})
    vmim("theirs", {"kubevirt.io/vmi-name": "vm-1"})
    vmim("unlabelled", {})
    # The API server enforces a new policy once its informer has it: wait on a dry-run delete.
    deadline = time.monotonic() + 30
    while True:
        status, body = as_user(cluster, creds, "DELETE", f"{base}/theirs?dryRun=All")
        if status == 403:
            break
        assert status == 200, body[:500]
        assert time.monotonic() < deadline, "the ValidatingAdmissionPolicy never took effect"
        time.sleep(0.3)
    assert b"may delete only the migrations it created" in body, body[:500]
    for name in ("theirs", "unlabelled"):
        status, body = as_user(cluster, creds, "DELETE", f"{base}/{name}")
        assert status == 403 and b"ValidatingAdmissionPolicy" in body, (name, status, body[:500])
    status, body = as_user(cluster, creds, "DELETE", f"{base}/ours")
    assert status == 200, body[:500]
    # Only the agent's ServiceAccount is matched: the admin deletes the others.
    for name in ("theirs", "unlabelled"):
        assert cluster.request("DELETE", f"{base}/{name}").status == 200
