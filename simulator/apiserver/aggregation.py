"""Extension API servers, the way kube-apiserver's aggregation layer serves them (an APIService).

An :class:`AggregatedApi` owns one API group: its discovery (listed under ``/apis``, with its own
``/apis/<group>/<version>`` resource lists) and every request under ``/apis/<group>/``. KubeVirt's
virt-api serves ``subresources.kubevirt.io`` this way (``simulator/kubevirt/subresources.py``).
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class AggregatedApi(Protocol):
    group: str
    #: served versions, preferred first
    versions: tuple[str, ...]

    def resources(self, version: str) -> list[dict[str, Any]]:
        """The ``resources`` of ``/apis/<group>/<version>`` (an APIResourceList)."""
        ...

    async def handle(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        """A request below ``/apis/<group>/<version>/`` (``path``: the segments after the version)."""
        ...


def group_entry(api: AggregatedApi) -> dict[str, Any]:
    versions = [{"groupVersion": f"{api.group}/{v}", "version": v} for v in api.versions]
    return {"name": api.group, "versions": versions, "preferredVersion": versions[0]}


def resource_list(api: AggregatedApi, version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{api.group}/{version}",
            "resources": api.resources(version)}  # fmt: skip
