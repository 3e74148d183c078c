"""Monitoring objects: off by default, each behind its flag, labels configurable, and the PrometheusRule
and dashboard carry the plain files of ``charts/hotplug-agent/files/`` byte for byte (one source of truth)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.chart.conftest import VARIANTS, render_variant
from tests.chart.helm import CHART, NAMESPACE, Helm, Rendered

pytestmark = pytest.mark.tools  # helm (hack/tools/install-helm.sh, $HELM or PATH)

RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"


def test_monitoring_off_by_default(default: Rendered) -> None:
    assert not default.of_kind("ServiceMonitor")
    assert not default.of_kind("PrometheusRule")
    assert not default.of_kind("ConfigMap")


def test_each_monitoring_object_has_its_own_flag(helm: Helm) -> None:
    for flag, kind in (
        ("serviceMonitor.enabled", "ServiceMonitor"),
        ("prometheusRule.enabled", "PrometheusRule"),
        ("grafanaDashboard.enabled", "ConfigMap"),
    ):
        rendered = helm.render(set_values=(f"{flag}=true",))
        monitoring = [
            o["kind"]
            for o in rendered.objects
            if o["kind"] in ("ServiceMonitor", "PrometheusRule", "ConfigMap")
        ]
        assert monitoring == [kind], flag


def test_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    rendered = render_variant(helm, "monitoring-on")
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert endpoint["metricRelabelings"][0]["action"] == "keep"
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    # The Service selects the agent pods.
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_scrape_job_name_matches_the_down_alert(helm: Helm) -> None:
    """HotplugAgentDown matches `up{job=~...}`; the job comes from the Service label named by jobLabel,
    so it must match even with fullnameOverride (hardened variant)."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    down = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "HotplugAgentDown")
    match = re.search(r'job=~"([^"]+)"', down["expr"])
    assert match, down["expr"]
    for variant in ("monitoring-on", "hardened"):
        rendered = helm.render(VARIANTS[variant], set_values=("serviceMonitor.enabled=true",))
        monitor = rendered.one("ServiceMonitor")
        job = rendered.one("Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
        assert re.fullmatch(match.group(1), job), (variant, job)


def test_prometheus_rule_spec_is_the_rules_file(helm: Helm) -> None:
    rendered = render_variant(helm, "monitoring-on")
    rule = rendered.one("PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Go-template expressions in annotations survive (.Files.Get is not templated).
    text = json.dumps(rule["spec"])
    assert "{{ $labels." in text or "{{ $value" in text


def test_dashboard_config_map(helm: Helm) -> None:
    rendered = render_variant(helm, "monitoring-on")
    config_map = rendered.one("ConfigMap")
    labels = config_map["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "KubeVirt"}
    (key,) = config_map["data"]
    assert key.endswith(".json")
    assert json.loads(config_map["data"][key]) == json.loads(DASHBOARD_FILE.read_text())


def test_dashboard_label_is_configurable(helm: Helm) -> None:
    rendered = helm.render(
        set_values=(
            "grafanaDashboard.enabled=true",
            "grafanaDashboard.label=my_dashboards",
            "grafanaDashboard.labelValue=yes",
            "grafanaDashboard.additionalLabels.team=virt",
        )
    )
    labels = rendered.one("ConfigMap")["metadata"]["labels"]
    assert labels["my_dashboards"] == "yes" and labels["team"] == "virt"
    assert "grafana_dashboard" not in labels


def test_monitoring_namespaces_configurable(helm: Helm) -> None:
    rendered = helm.render(
        set_values=(
            "serviceMonitor.enabled=true",
            "serviceMonitor.namespace=monitoring",
            "prometheusRule.enabled=true",
            "prometheusRule.namespace=monitoring",
        )
    )
    assert rendered.one("ServiceMonitor")["metadata"]["namespace"] == "monitoring"
    assert rendered.one("ServiceMonitor")["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert rendered.one("PrometheusRule")["metadata"]["namespace"] == "monitoring"
