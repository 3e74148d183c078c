"""The chart lints cleanly, renders for every values variant, and every object passes its schema.

Schemas come from published Go modules, offline once downloaded (tests/chart/schemas.py): Kubernetes'
own OpenAPI document for built-in kinds, the prometheus-operator CRDs for ServiceMonitor/PrometheusRule.
Both are strict (unknown fields are errors), and the validators are checked to really reject bad input.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart import schemas
from tests.chart.conftest import VARIANTS, render_variant
from tests.chart.helm import CHART, NAMESPACE, RELEASE, Helm, Rendered

pytestmark = pytest.mark.tools  # helm (hack/tools/install-helm.sh, $HELM or PATH)

CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}

EXPECTED_KINDS: dict[str, list[str]] = {
    "default": [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ],
    "monitoring-on": [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ],
    # Two watched namespaces: a Role + RoleBinding in each, plus the leader-election pair.
    "watch-namespaces": [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ],
    "single-replica-no-leader-election": [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ],
    "hardened": [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ],
}

RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def test_every_ci_values_file_has_expectations() -> None:
    assert set(VARIANTS) == set(EXPECTED_KINDS)


def test_lint_strict(helm: Helm, variant: str) -> None:
    proc = helm.lint_strict(VARIANTS[variant])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output
    assert "1 chart(s) linted, 0 chart(s) failed" in output


def test_rendered_kinds(rendered: Rendered, variant: str) -> None:
    assert rendered.kinds() == sorted(EXPECTED_KINDS[variant])


def test_objects_pass_kubernetes_and_crd_schemas(rendered: Rendered) -> None:
    problems = {
        f"{source} {obj['kind']}/{obj['metadata']['name']}": errors
        for obj, source in zip(rendered.objects, rendered.sources, strict=True)
        if (errors := schemas.validation_errors(obj))
    }
    assert problems == {}


def test_metadata_names_namespaces_and_labels(rendered: Rendered, variant: str) -> None:
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert schemas.object_meta_pattern_ok(meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta
        else:
            assert meta.get("namespace"), f"{obj['kind']}/{meta['name']} has no namespace"
        labels = meta.get("labels", {})
        for label in RECOMMENDED_LABELS:
            assert label in labels, f"{obj['kind']}/{meta['name']} lacks {label}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_object_names_unique(rendered: Rendered) -> None:
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects]
    assert len(keys) == len(set(keys))


def test_objects_in_release_namespace_by_default(default: Rendered) -> None:
    for obj in default.objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_kubernetes_validator_is_strict(default: Rendered) -> None:
    deployment = copy.deepcopy(default.one("Deployment"))
    assert schemas.validation_errors(deployment) == []
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    deployment["spec"]["replicas"] = "two"
    errors = schemas.validation_errors(deployment)
    assert any("bogusField" in e for e in errors), errors
    assert any(e.startswith("spec/replicas") for e in errors), errors


def test_crd_validator_is_strict(helm: Helm) -> None:
    rendered = render_variant(helm, "monitoring-on")
    monitor = copy.deepcopy(rendered.one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # not a field: it is `interval`
    monitor["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    errors = schemas.validation_errors(monitor)
    assert any("scrapeInterval" in e for e in errors), errors
    assert any(e.startswith("spec/endpoints/0/interval") for e in errors), errors
    rule = copy.deepcopy(rendered.one("PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert schemas.validation_errors(rule), "a bad `for` duration must fail the CRD schema"


def test_unknown_kind_is_an_error() -> None:
    assert schemas.validation_errors({"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {}})


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (("bogus=1",), "additional properties 'bogus' not allowed"),
        (("mode=sometimes",), "/mode"),
        (("slotModel=v3",), "/slotModel"),
        (("maxAttempts=0",), "/maxAttempts"),
        (("metrics.port=70000",), "/metrics/port"),
        (("watchNamespaces={Tenant_A}",), "/watchNamespaces/0"),
        (("leaderElection.enabled=false",), "replicaCount > 1 needs leaderElection.enabled=true"),
        (
            ("leaderElection.renewDeadlineSeconds=2",),
            "leaderElection.renewDeadlineSeconds (2) must be > 1.2 x leaderElection.retryPeriodSeconds (2)",
        ),
        (
            ("leaderElection.leaseDurationSeconds=10",),
            "leaderElection.leaseDurationSeconds (10) must be > leaderElection.renewDeadlineSeconds (10)",
        ),
        (("podDisruptionBudget.minAvailable=1",), "set minAvailable or maxUnavailable, not both"),
        (
            ("podDisruptionBudget.maxUnavailable=null",),
            "podDisruptionBudget: set minAvailable or maxUnavailable",
        ),
        (
            ("podDisruptionBudget.unhealthyPodEvictionPolicy=Sometimes",),
            "/podDisruptionBudget/unhealthyPodEvictionPolicy",
        ),
    ],
)
def test_bad_values_are_rejected(helm: Helm, set_values: tuple[str, ...], message: str) -> None:
    out = helm.template(set_values=set_values, check=False)
    assert isinstance(out, subprocess.CompletedProcess), "rendering should have failed"
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_notes_render(helm: Helm, variant: str, tmp_path: Path) -> None:
    """NOTES.txt only renders on install, which needs a cluster; render it through a copy of the chart
    that wraps it in a template (same engine, same values), and check what it tells the user."""
    chart = tmp_path / "hotplug-agent"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_test.tpl").write_text(
        '{{- define "notes-test" }}' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes-test" . | quote }}\n'
    )
    args = [
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/notes-test.yaml",
    ]
    for values in VARIANTS[variant]:
        args += ["--values", str(values)]
    text = str(yaml.safe_load(helm.run(*args).stdout)["data"]["notes"])
    rendered = render_variant(helm, variant)
    name = rendered.one("Deployment")["metadata"]["name"]
    assert f"deploy/{name}" in text and f"svc/{name}" in text
    assert f"-n {NAMESPACE} " in text
    leader_election = any(
        r["metadata"]["name"].endswith("-leader-election") for r in rendered.of_kind("Role")
    )
    assert ("leader Lease" in text) == leader_election
    assert ("serviceMonitor.enabled=true" in text) == (not rendered.of_kind("ServiceMonitor"))
    if variant == "watch-namespaces":
        assert "Watched namespaces: tenant-a, tenant-b" in text
    else:
        assert "Watched namespaces: all" in text
