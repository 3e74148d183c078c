"""Monitoring objects: off by default, each behind its flag, labels configurable; the dashboard carries
``files/grafana-dashboard.json`` as is and the PrometheusRule, with default values, is
``files/prometheus-rules.yaml`` (one source of truth); a customised PrometheusRule (alerts disabled,
``for``/``severity``, labels, runbook URLs, part-of label, job matcher) passes promtool's check and a
unit test of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import VARIANTS, render_variant
from tests.chart.helm import CHART, NAMESPACE, Helm, Rendered
from tests.observability.promtool import check_rules, run_rule_tests

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


def _alert(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for g in spec["groups"] for r in g["rules"] if r.get("alert") == name)


@pytest.mark.parametrize(
    ("variant", "extra"),
    [("monitoring-on", ()), ("hardened", ()), ("monitoring-on", ("nameOverride=nic-agent",))],
)
def test_down_alert_selects_exactly_the_service_monitor_job(
    helm: Helm, variant: str, extra: tuple[str, ...]
) -> None:
    """HotplugAgentDown matches `up{job="..."}` exactly; the job comes from the Service label named by the
    ServiceMonitor's jobLabel, whatever fullnameOverride or nameOverride say."""
    rendered = helm.render(
        VARIANTS[variant], set_values=("serviceMonitor.enabled=true", "prometheusRule.enabled=true", *extra)
    )
    monitor = rendered.one("ServiceMonitor")
    job = rendered.one("Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    down = _alert(rendered.one("PrometheusRule")["spec"], "HotplugAgentDown")
    assert down["expr"] == f'absent(up{{job="{job}"}} == 1)'


def test_prometheus_rule_spec_is_the_rules_file(helm: Helm) -> None:
    """With the default values the chart changes nothing in the tested file."""
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


CUSTOM = (
    "prometheusRule.enabled=true",
    'prometheusRule.jobSelector=job="kubernetes-pods"\\, app="hotplug-agent"',
    "prometheusRule.runbookUrlTemplate=https://runbooks.example.com/virt/%s",
    "prometheusRule.operatorPartOf=kubevirt",
    "prometheusRule.additionalRuleLabels.team=virt-platform",
    "prometheusRule.disabled.HotplugAgentMultipleLeaders=true",
    "prometheusRule.disabled.HotplugAgentWatchRestartsStorm=true",
    "prometheusRule.customRules.HotplugAgentVMsBlocked.for=2m",
    "prometheusRule.customRules.HotplugAgentVMsBlocked.severity=warning",
    "prometheusRule.customRules.HotplugAgentDown.for=3m",
)


@pytest.fixture(scope="module")
def customised(helm: Helm) -> dict[str, Any]:
    spec = helm.render(set_values=CUSTOM).one("PrometheusRule")["spec"]
    assert isinstance(spec, dict)
    return spec


def test_customised_rules_follow_the_values(customised: dict[str, Any]) -> None:
    default = yaml.safe_load(RULES_FILE.read_text())
    names = [r["alert"] for g in customised["groups"] for r in g["rules"]]
    default_names = [r["alert"] for g in default["groups"] for r in g["rules"]]
    assert names == [
        n for n in default_names if n not in ("HotplugAgentMultipleLeaders", "HotplugAgentWatchRestartsStorm")
    ]
    for name in names:
        rule, original = _alert(customised, name), _alert(default, name)
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.example.com/virt/{name}"
        assert {k: v for k, v in rule["annotations"].items() if k != "runbook_url"} == {
            k: v for k, v in original["annotations"].items() if k != "runbook_url"
        }
        assert rule["labels"]["kubernetes_operator_part_of"] == "kubevirt"
        assert rule["labels"]["team"] == "virt-platform"
    blocked = _alert(customised, "HotplugAgentVMsBlocked")
    assert (blocked["for"], blocked["labels"]["severity"]) == ("2m", "warning")
    down = _alert(customised, "HotplugAgentDown")
    assert down["for"] == "3m"
    assert down["expr"] == 'absent(up{job="kubernetes-pods", app="hotplug-agent"} == 1)'
    # What was not overridden stays as in the file.
    stuck = _alert(customised, "HotplugAgentMigrationsStuck")
    assert stuck["for"] == _alert(default, "HotplugAgentMigrationsStuck")["for"]
    assert stuck["labels"]["severity"] == _alert(default, "HotplugAgentMigrationsStuck")["labels"]["severity"]


@pytest.mark.tools
def test_customised_rules_pass_promtool(customised: dict[str, Any], tmp_path: Path) -> None:
    """promtool's lint, and a unit test of the customised alerts: VMsBlocked fires after the new 2m with
    the new labels and runbook URL; HotplugAgentDown follows the new job matcher."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(customised, sort_keys=False))
    proc = check_rules(rules)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    blocked = _alert(customised, "HotplugAgentVMsBlocked")
    labels = {"namespace": "hotplug", "reason": "restart-required"}
    unit = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'hotplug_agent_blocked_vms{namespace="hotplug", pod="a", '
                        'reason="restart-required"}',
                        "values": "0 2x10",
                    },
                    {"series": 'up{job="kubernetes-pods", app="hotplug-agent"}', "values": "0x10"},
                    {"series": 'up{job="hotplug-agent"}', "values": "1x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "HotplugAgentVMsBlocked", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "HotplugAgentVMsBlocked",
                        "exp_alerts": [
                            {
                                "exp_labels": {**blocked["labels"], **labels},
                                "exp_annotations": {
                                    "summary": blocked["annotations"]["summary"],
                                    "description": "2 VMs are blocked with reason restart-required; their "
                                    "interface changes will not reach the guest without intervention. See "
                                    "the agent's Events.",
                                    "runbook_url": "https://runbooks.example.com/virt/HotplugAgentVMsBlocked",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "4m",
                        "alertname": "HotplugAgentDown",
                        "exp_alerts": [
                            {
                                "exp_labels": _alert(customised, "HotplugAgentDown")["labels"],
                                "exp_annotations": _alert(customised, "HotplugAgentDown")["annotations"],
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "unit.yaml"
    test_file.write_text(yaml.safe_dump(unit, sort_keys=False))
    proc = run_rule_tests(test_file)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_unknown_alert_name_fails(helm: Helm) -> None:
    for value in ("prometheusRule.disabled.HotplugAgentTypo=true", "prometheusRule.customRules.Nope.for=1m"):
        proc = helm.template(set_values=("prometheusRule.enabled=true", value), check=False)
        assert not isinstance(proc, Rendered)
        assert "prometheusRule: no alert named" in proc.stderr, proc.stderr
