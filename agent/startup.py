"""What the agent checks and says when it starts, so that a broken set-up explains itself.

Three questions are answered once, before any informer runs, with a message an operator can act on:

- **Which cluster?** :func:`connect` loads the in-cluster service account or a kubeconfig (with
  ``--context``); a missing file says ``kubeconfig /path: no such file`` instead of a parser's
  complaint about a missing key.
- **Is KubeVirt there?** :func:`discover` asks discovery whether ``kubevirt.io/v1`` is served with the
  four resources the agent watches. Not served is one clear error (``is KubeVirt installed?``); the
  agent keeps its readiness false and asks again, ``plan`` exits non-zero. Multus's
  NetworkAttachmentDefinition API (``k8s.cni.cncf.io/v1``) missing is only a warning: the agent then
  runs no NAD informer and skips its network preflight (:attr:`Apis.network_attachment_definitions`).
- **Are we allowed?** :func:`forbidden_hint` turns a 403 into the verb and resource that are missing
  and where the chart grants them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from agent.kube import KUBEVIRTS, NADS, VMIMS, VMIS, VMS, ApiError, KubeClient, Resource

KUBEVIRT_GROUP_VERSION: Final = "kubevirt.io/v1"
NAD_GROUP_VERSION: Final = f"{NADS.group}/{NADS.version}"
#: The resources of ``kubevirt.io/v1`` the agent lists and watches.
KUBEVIRT_RESOURCES: Final = (VMS, VMIS, VMIMS, KUBEVIRTS)
#: Where the chart grants the agent's permissions (named in every 403 hint).
CHART_RBAC: Final = (
    "the chart's RBAC (charts/hotplug-agent/templates/clusterrole.yaml, role-namespaced.yaml for "
    "watchNamespaces, role-leaderelection.yaml; rendered when rbac.create=true)"
)
_DISCOVERY: Final = Resource("", "", "discovery")


class StartupError(Exception):
    """The agent cannot start against this cluster; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Apis:
    """What discovery said about the APIs the agent depends on."""

    server: str
    kubevirt: bool
    #: ``kubevirt.io/v1`` resources the agent needs that discovery does not list (empty when all are).
    kubevirt_missing: tuple[str, ...]
    network_attachment_definitions: bool

    def kubevirt_problem(self) -> str:
        """One sentence for the operator, empty when ``kubevirt.io/v1`` is usable."""
        if not self.kubevirt:
            return (
                f"{KUBEVIRT_GROUP_VERSION} is not served by the API server at {self.server}: "
                "is KubeVirt installed?"
            )
        if self.kubevirt_missing:
            return (
                f"{KUBEVIRT_GROUP_VERSION} at {self.server} does not serve "
                f"{', '.join(self.kubevirt_missing)}: is KubeVirt fully installed (its CRDs)?"
            )
        return ""


def _kubeconfig_paths(kubeconfig: str | None) -> list[Path]:
    if kubeconfig is not None:
        return [Path(kubeconfig).expanduser()]
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


async def connect(kubeconfig: str | None, context: str | None = None, **kwargs: Any) -> KubeClient:
    """A :class:`KubeClient` for the in-cluster service account or a kubeconfig (``kwargs`` go to it).

    In a pod (``KUBERNETES_SERVICE_HOST`` set) without ``kubeconfig`` and ``context``: the service
    account. Otherwise ``kubeconfig``, else ``$KUBECONFIG`` (paths joined by ``:``), else
    ``~/.kube/config``. Raises :class:`StartupError` naming the file and the problem.
    """
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cfg = k8s_client.Configuration()
        try:
            # Synchronous but tiny: reads the service-account token and CA paths once.
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as exc:
            raise StartupError(f"in-cluster configuration: {exc}") from None
        return KubeClient(k8s_client.ApiClient(configuration=cfg), **kwargs)
    paths = _kubeconfig_paths(kubeconfig)
    shown = os.pathsep.join(str(p) for p in paths)
    existing = [p for p in paths if p.is_file()]
    if not existing:
        hint = "" if kubeconfig is not None else " (and not running in a pod: pass --kubeconfig)"
        raise StartupError(f"kubeconfig {shown}: no such file{hint}")
    _check_context(existing, shown, context)
    try:
        api = await k8s_config.new_client_from_config(
            config_file=os.pathsep.join(str(p) for p in existing), context=context
        )
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        what = f" context {context!r}" if context else ""
        raise StartupError(f"kubeconfig {shown}{what}: {exc}") from None
    return KubeClient(api, **kwargs)


def _check_context(paths: list[Path], shown: str, context: str | None) -> None:
    """Name the contexts there are when the wanted one (or a current-context) is missing."""
    names: list[str] = []
    current = ""
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise StartupError(f"kubeconfig {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise StartupError(f"kubeconfig {path}: not a kubeconfig (no mapping at the top)")
        current = current or str(doc.get("current-context") or "")
        names += [str(c.get("name")) for c in doc.get("contexts") or () if isinstance(c, dict)]
    known = ", ".join(names) or "none"
    if context is not None and context not in names:
        raise StartupError(f"kubeconfig {shown}: no context {context!r} (contexts: {known})")
    if context is None and not current:
        raise StartupError(f"kubeconfig {shown}: no current-context; pass --context (contexts: {known})")


def server_of(kube: KubeClient) -> str:
    return str(kube.api_client.configuration.host)


async def discovery_document(kube: KubeClient, group_version: str) -> dict[str, Any] | None:
    """The discovery document of ``/apis/<group_version>``, or ``None`` when it is not served."""
    try:
        doc = await kube.request("get", _DISCOVERY, "GET", f"/apis/{group_version}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        if exc.status == 403:
            raise StartupError(forbidden_hint(exc, None, f"/apis/{group_version}")) from None
        raise StartupError(f"discovery of {group_version} at {server_of(kube)} failed: {exc}") from None
    return doc if isinstance(doc, dict) else {}


async def discover(kube: KubeClient) -> Apis:
    """Ask discovery for ``kubevirt.io/v1`` and ``k8s.cni.cncf.io/v1``; raises :class:`StartupError`
    only when discovery itself cannot be read (no answer, forbidden)."""
    kubevirt = await discovery_document(kube, KUBEVIRT_GROUP_VERSION)
    missing: tuple[str, ...] = ()
    if kubevirt is not None:
        served = {r.get("name") for r in kubevirt.get("resources") or () if isinstance(r, dict)}
        missing = tuple(r.plural for r in KUBEVIRT_RESOURCES if r.plural not in served)
    nad = await discovery_document(kube, NAD_GROUP_VERSION)
    return Apis(server_of(kube), kubevirt is not None, missing, nad is not None)


def forbidden_hint(exc: ApiError, resource: Resource | None, scope: str | None = None) -> str:
    """A 403 as the operator needs it: who may not do what where, and where the chart grants it.

    ``scope``: a namespace, ``None``/"" for cluster-wide, or a non-resource URL when ``resource`` is
    ``None``.
    """
    if resource is None:
        what = f"get {scope}"
    else:
        name = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        where = f"in namespace {scope}" if scope else "cluster-wide"
        what = f"{exc.verb or '?'} {name} {where}"
    return (
        f"forbidden: the agent may not {what} ({exc.message}). Grant it as {CHART_RBAC} does; "
        "with --namespaces / watchNamespaces the chart grants the KubeVirt permissions per namespace, "
        "so both must list the same namespaces"
    )
