"""VMI ``status`` pieces exactly as KubeVirt writes them: interface entries, conditions, timestamps.

Why: the agent (and KubeVirt's own evaluator) read pending hot plugs from ``status.interfaces`` and
its ``infoSource`` strings, so the simulator must write them byte for byte like KubeVirt
(HEAD:pkg/network/vmispec/infosource.go, HEAD:pkg/network/controllers/vmi.go).
Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from agent.kubevirt import (
    INFO_SOURCE_DOMAIN,
    INFO_SOURCE_GUEST_AGENT,
    INFO_SOURCE_MULTUS_STATUS,
    INFO_SOURCE_ORDER,
)
from simulator.kubevirt import rules

INFO_SOURCE_DOMAIN_AND_GA: Final = f"{INFO_SOURCE_DOMAIN}, {INFO_SOURCE_GUEST_AGENT}"
REASON_SYNC_FAILED: Final = "Synchronizing with the Domain failed."


def rfc3339(t: float) -> str:
    """RFC 3339 UTC with microseconds.

    KubeVirt's ``metav1.Time`` serializes whole seconds; the simulator needs sub-second precision for
    fast (scaled) runs, so it writes microseconds. Consumers must parse both (RFC 3339 allows both;
    :func:`agent.kubevirt.parse_timestamp` does).
    """
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_seconds(t: float) -> str:
    """RFC 3339 UTC in whole seconds, as Go's ``metav1.Time`` marshals it.

    Real KubeVirt code patches objects with JSON-patch ``test`` operations on the values it read and
    re-marshalled: a timestamp written with a fraction never tests equal, so every writer beside real
    KubeVirt components (the real-KubeVirt tier's node side) must use this form."""
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: How a writer formats timestamps: :func:`rfc3339` (the simulator) or :func:`rfc3339_seconds`.
Stamp = Callable[[float], str]


def pod_interface_name(network_name: str) -> str:
    """Hashed pod interface name: ``"pod" + sha256(networkName)[:11]`` (networknamescheme.go)."""
    return "pod" + hashlib.sha256(network_name.encode()).hexdigest()[:11]


def join_info_source(sources: Iterable[str]) -> str:
    """KubeVirt's order and separator: ``domain, guest-agent, multus-status``."""
    present = set(sources)
    return ", ".join(s for s in INFO_SOURCE_ORDER if s in present)


def mac_for(namespace: str, name: str, iface: str) -> str:
    """A stable locally administered MAC for a simulated NIC."""
    digest = hashlib.sha256(f"{namespace}/{name}/{iface}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def interface_statuses(
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    attached: set[str],
    pod_networks: set[str],
) -> list[dict[str, Any]]:
    """``status.interfaces`` for a VMI given what the domain and the pod have.

    Pod network → ``domain, guest-agent`` with ``interfaceName``/IP (``podInterfaceName: eth0``);
    secondary Multus interfaces → ``domain, guest-agent`` when attached, plus ``multus-status`` when the
    pod's ``network-status`` has the network; an interface known to neither has no entry.
    """
    nets = rules.network_by_name(spec)
    out: list[dict[str, Any]] = []
    guest_index = 0
    for iface in rules.interfaces(spec):
        iname = str(iface.get("name", ""))
        net = nets.get(iname, {})
        mac = iface.get("macAddress") if isinstance(iface.get("macAddress"), str) else None
        mac = mac or mac_for(namespace, name, iname)
        if rules.is_pod_network(net):
            digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
            ip = f"10.{128 + digest[0] % 64}.{digest[1]}.{max(digest[2], 2)}"
            out.append(
                {
                    "infoSource": INFO_SOURCE_DOMAIN_AND_GA,
                    "interfaceName": f"eth{guest_index}",
                    "ipAddress": ip,
                    "ipAddresses": [ip],
                    "linkState": "up",
                    "mac": mac,
                    "name": iname,
                    "podInterfaceName": "eth0",
                    "queueCount": 1,
                }
            )
            guest_index += 1
            continue
        if not rules.is_secondary_multus(net):
            continue
        sources: set[str] = set()
        in_domain = iname in attached
        if in_domain:
            sources.update((INFO_SOURCE_DOMAIN, INFO_SOURCE_GUEST_AGENT))
        if iname in pod_networks:
            sources.add(INFO_SOURCE_MULTUS_STATUS)
        if not sources:
            continue
        entry: dict[str, Any] = {
            "infoSource": join_info_source(sources),
            "name": iname,
            "podInterfaceName": pod_interface_name(iname),
        }
        if in_domain:
            entry["interfaceName"] = f"eth{guest_index}"
            entry["linkState"] = "down" if iface.get("state") == "down" else "up"
            entry["mac"] = mac
            entry["queueCount"] = 1
            guest_index += 1
        out.append(entry)
    return out


def set_condition(
    conditions: list[dict[str, Any]],
    ctype: str,
    status: str,
    reason: str = "",
    message: str = "",
    now: float = 0.0,
    stamp: Stamp = rfc3339,
) -> list[dict[str, Any]]:
    """Conditions with ``ctype`` set; ``lastTransitionTime`` kept when the status did not change."""
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != ctype:
            out.append(cond)
            continue
        found = True
        new: dict[str, Any] = {"type": ctype, "status": status}
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        new["lastProbeTime"] = None
        same = cond.get("status") == status and cond.get("lastTransitionTime")
        new["lastTransitionTime"] = cond.get("lastTransitionTime") if same else stamp(now)
        out.append(new)
    if not found:
        new = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": stamp(now)}
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        out.append(new)
    return out


def remove_condition(conditions: list[dict[str, Any]], ctype: str) -> list[dict[str, Any]]:
    return [c for c in conditions if c.get("type") != ctype]


def get_condition(obj: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    status = obj.get("status")
    if not isinstance(status, dict):
        return None
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None
