"""Is a VM's ``RestartRequired`` condition real, or only KubeVirt's reaction to the hot plug itself?

Why: KubeVirt v1.2.0 to v1.4.0, v1.5.0 and v1.5.1 compare the VM template with the one its VMI started
from (the start ControllerRevision) *including* interfaces and networks, so every hot plug and every
``state: absent`` sets ``RestartRequired`` and keeps it until a restart. The hot plug still reaches the
VMI spec, so a migration delivers it — while an agent that trusts the condition migrates nothing on
those releases. KubeVirt fixed it in v1.4.1, v1.5.2 and v1.6.0 by exempting network edits that can be
applied live (``pkg/network/vmliveupdate/restart.go``). This module answers, from the same three
objects KubeVirt reads (start revision, VM, VMI), what a fixed KubeVirt would answer.

Pure: raw dicts in, a :class:`RestartCheck` out. The agent fetches the three objects only for VMs that
carry the condition on an affected release (``agent.kube`` does the I/O). The simulated KubeVirt models
the same rule separately (``simulator/kubevirt/rules.py``): the judge never borrows the judged logic.

Mirrors ``addRestartRequiredIfNeeded`` of v1.5.2: fields KubeVirt updates live (with the
``LiveUpdate`` rollout strategy: volumes, disks, CPU sockets, guest memory, node selector, affinity,
tolerations) are ignored; interfaces and networks are ignored unless ``IsRestartRequired`` says a
network edit needs a restart (an interface or network removed instead of set ``absent``, an existing
interface changed other than ``state``, an existing network changed). Not covered: instance types
and preferences (KubeVirt expands them before comparing; a VM using them is judged on its template).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

Version = tuple[int, int, int]
Spec = Mapping[str, Any]

#: Template spec keys KubeVirt updates live with ``vmRolloutStrategy: LiveUpdate``.
_LIVE_TOP: Final = ("volumes", "nodeSelector", "affinity", "tolerations")


def flags_every_network_edit(version: Version | None) -> bool:
    """The KubeVirt releases that set ``RestartRequired`` on every interface/network edit of the template."""
    if version is None:
        return False
    return (1, 2, 0) <= version <= (1, 4, 0) or (1, 5, 0) <= version <= (1, 5, 1)


@dataclass(frozen=True, slots=True)
class RestartCheck:
    """``needed``: a restart is really needed (a fixed KubeVirt would set the condition too);
    ``reason``: what needs it, or why the condition is only the hot plug's, for Events and logs."""

    needed: bool
    reason: str


def _dict(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _list(obj: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _pruned(value: Any) -> Any:
    """JSON with nulls, empty objects and empty lists dropped (Go's ``omitempty``: equal to absent)."""
    if isinstance(value, Mapping):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _by_name(items: list[Mapping[str, Any]], drop: str = "") -> dict[str, Any]:
    return {str(i.get("name")): _pruned({k: v for k, v in i.items() if k != drop}) for i in items}


def _interfaces(spec: Spec) -> list[Mapping[str, Any]]:
    return _list(_dict(_dict(spec, "domain"), "devices"), "interfaces")


def network_edit_needs_restart(template_spec: Spec, vmi_spec: Spec) -> str:
    """``IsRestartRequired`` (v1.5.2): what network edit of the template a restart is needed for, or ""."""
    template_ifaces = _by_name(_interfaces(template_spec), "state")
    template_nets = _by_name(_list(template_spec, "networks"))
    for name, iface in _by_name(_interfaces(vmi_spec), "state").items():
        if name not in template_ifaces:
            return f"interface {name} was removed from the template instead of being set to state absent"
        if template_ifaces[name] != iface:
            return f"interface {name} was changed (other than its state)"
    for name, net in _by_name(_list(vmi_spec, "networks")).items():
        if name not in template_nets:
            return f"network {name} was removed from the template"
        if template_nets[name] != net:
            return f"network {name} was changed"
    return ""


def _without_live_fields(spec: Spec, *, live_update: bool, volumes_hotplugged: bool) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(spec))
    domain: dict[str, Any] = out["domain"] if isinstance(out.get("domain"), dict) else {}
    devices: dict[str, Any] = domain["devices"] if isinstance(domain.get("devices"), dict) else {}
    devices.pop("interfaces", None)
    out.pop("networks", None)
    if live_update or volumes_hotplugged:
        out.pop("volumes", None)
        devices.pop("disks", None)
    if live_update:
        for key in _LIVE_TOP:
            out.pop(key, None)
        if isinstance(domain.get("cpu"), dict):
            domain["cpu"].pop("sockets", None)
        if isinstance(domain.get("memory"), dict):
            domain["memory"].pop("guest", None)
    return out


def _changed_paths(before: Any, after: Any, prefix: str = "spec.template.spec", depth: int = 3) -> list[str]:
    """The paths (``depth`` levels deep at most) where two pruned specs differ, for a readable reason."""
    if before is None and isinstance(after, dict):
        before = {}
    if after is None and isinstance(before, dict):
        after = {}
    if not isinstance(before, dict) or not isinstance(after, dict) or depth == 0:
        return [prefix] if before != after else []
    paths: list[str] = []
    for key in sorted(set(before) | set(after)):
        paths.extend(_changed_paths(before.get(key), after.get(key), f"{prefix}.{key}", depth - 1))
    return paths


def check_restart(start_spec: Spec, vm: Spec, vmi: Spec, *, live_update: bool) -> RestartCheck:
    """What a fixed KubeVirt says about ``vm`` (whose VMI ``vmi`` started from ``start_spec``, the VM spec
    in the start ControllerRevision): a restart needed, and why; or the condition is only the hot plug's.
    """
    template = _dict(_dict(_dict(vm, "spec"), "template"), "spec")
    started = _dict(_dict(start_spec, "template"), "spec")
    why = network_edit_needs_restart(template, _dict(vmi, "spec"))
    if why:
        return RestartCheck(True, why)
    vmi_spec = _dict(vmi, "spec")
    # Without LiveUpdate, volumes and disks still change by volume hot plug: then the VMI has them too.
    hotplugged = _pruned(template.get("volumes")) == _pruned(vmi_spec.get("volumes")) and _pruned(
        _dict(_dict(template, "domain"), "devices").get("disks")
    ) == _pruned(_dict(_dict(vmi_spec, "domain"), "devices").get("disks"))
    kw = {"live_update": live_update, "volumes_hotplugged": hotplugged}
    before = _pruned(_without_live_fields(started, **kw))
    after = _pruned(_without_live_fields(template, **kw))
    changed = _changed_paths(before, after)
    if changed:
        return RestartCheck(True, f"{', '.join(changed)} changed since the VM started")
    return RestartCheck(
        False, "RestartRequired comes only from the network edit (a bug of this KubeVirt release)"
    )


__all__ = ["RestartCheck", "check_restart", "flags_every_network_edit", "network_edit_needs_restart"]
