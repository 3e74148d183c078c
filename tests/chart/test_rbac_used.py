"""The chart grants exactly the verbs the agent calls, derived from the code, not from a hand list.

The agent runs end to end against the simulated cluster (``tests/e2e/world.py``) through every kind of
request it makes: its informers list and watch, it takes and renews and releases the Lease, plugs an
interface (a migration created, Events written) into a VM whose migrations hang, so it cancels (deletes)
them past its deadline; on KubeVirt v1.5.1, so it also checks a RestartRequired against the VM's
start revision (get VM, VMI, ControllerRevision). Every request it sends is counted where all
requests pass (``KubeClient._send``) in
``hotplug_agent_rest_client_requests_total{verb,resource,code}``; those (group, resource, verb) —
groups from the ``Resource`` declarations of ``agent/kube.py`` — must equal what the chart's roles
grant, in both RBAC layouts. A new call without a grant, or a grant nobody calls, fails here.
"""

from __future__ import annotations

import pytest

from agent import kube
from simulator.manifests import vm_manifest
from tests.chart.conftest import render_variant
from tests.chart.helm import Helm, Rendered
from tests.chart.test_rbac import grants
from tests.e2e.world import NET_A, NS, cluster_config, world

pytestmark = pytest.mark.tools  # helm

Call = tuple[str, str, str]  # (API group, resource, verb)

#: API group of every resource the agent declares, from agent/kube.py itself.
GROUPS = {r.plural: r.group for r in vars(kube).values() if isinstance(r, kube.Resource)}
LEASE = {
    "leader_elect": True,
    "lease_namespace": "e2e",
    "lease_duration_seconds": 2.0,
    "renew_deadline_seconds": 1.5,
    "retry_period_seconds": 0.2,
}


def granted(rendered: Rendered) -> set[Call]:
    return {(group, resource, verb) for _scope, group, resource, verb, _name in grants(rendered)}


async def agent_calls() -> set[Call]:
    # KubeVirt v1.5.1 sets RestartRequired for the hot plug: the agent reads the VM's start revision too.
    async with world(cluster_config(stuck_rate=1.0, kubevirt_version="v1.5.1")) as w:
        await w.seed(vm_manifest(NS, "vm-a", NET_A))
        agent = await w.start_agent(max_attempts=2, migration_deadline_seconds=1.0, **LEASE)
        await w.wait(lambda: agent.leading, "the agent leads")
        await w.plug("vm-a")
        await w.wait_event("vm-a", "HotplugMigrationGaveUp")
        assert await agent.shutdown() == 0  # releases the Lease
    calls: set[Call] = set()
    for family in agent.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "hotplug_agent_rest_client_requests_total" and sample.value:
                resource, verb = sample.labels["resource"], sample.labels["verb"]
                if resource == "discovery":
                    continue  # /apis/…: every authenticated user may read discovery (system:discovery)
                assert resource in GROUPS, f"a request for {resource!r}, which agent/kube.py does not declare"
                calls.add((GROUPS[resource], resource, verb))
    return calls


@pytest.fixture(scope="module")
def calls() -> set[Call]:
    import asyncio

    return asyncio.run(agent_calls())


def test_the_run_exercised_every_kind_of_request(calls: set[Call]) -> None:
    """The scenario is not vacuous: the agent's own paths (informers, Lease, migrations, Events) ran."""
    assert {
        ("kubevirt.io", "virtualmachineinstancemigrations", "create"),
        ("kubevirt.io", "virtualmachineinstancemigrations", "delete"),
        ("", "events", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("kubevirt.io", "kubevirts", "watch"),
        ("apps", "controllerrevisions", "get"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "watch"),
        ("", "nodes", "watch"),
        ("", "pods", "watch"),
    } <= calls


@pytest.mark.parametrize("variant", ["default", "watch-namespaces"])
def test_granted_verbs_are_exactly_the_verbs_called(helm: Helm, calls: set[Call], variant: str) -> None:
    given = granted(render_variant(helm, variant))
    assert {"missing grants": calls - given, "grants never used": given - calls} == {
        "missing grants": set(),
        "grants never used": set(),
    }
