"""virt-api's ``subresources.kubevirt.io`` API in the simulated cluster: what ``virtctl migrate`` and
``virtctl version`` call, so a user's virtctl works against ``hotplug-agent cluster`` as against a real
cluster (the real-KubeVirt tier runs the same commands against real virt-api).

Served, as virt-api serves them (HEAD:pkg/virt-api/rest/lifecycle.go ``MigrateVMRequestHandler``,
subresource.go):

* ``PUT …/namespaces/<ns>/virtualmachines/<name>/migrate`` (body ``MigrateOptions``): 404 for a missing
  VM, 409 "VM is not running", else a VMIM ``generateName: kubevirt-migrate-vm-`` created through the
  admission hooks — a denial comes back as virt-api wraps it, a 500 ``Internal error occurred: …`` —
  and 202 Accepted. ``virtctl migrate-cancel`` needs nothing here: it lists and deletes VMIMs itself.
* ``GET …/version`` (the simulated release) and ``GET …/healthz``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from agent.kubevirt import VIRTCTL_MIGRATE_PREFIX
from simulator.apiserver import AdmissionDenied, ApiError, Store
from simulator.apiserver.httputil import json_response

GROUP: Final = "subresources.kubevirt.io"
VM_NOT_RUNNING: Final = "VM is not running"


def _not_found(name: str) -> ApiError:
    return ApiError(404, f'virtualmachine.kubevirt.io "{name}" not found', "NotFound",
                    {"name": name, "group": "kubevirt.io", "kind": "virtualmachine"})  # fmt: skip


class VirtApiSubresources:
    """An :class:`~simulator.apiserver.aggregation.AggregatedApi` over the embedded server's store."""

    group = GROUP
    versions: tuple[str, ...] = ("v1", "v1alpha3")

    def __init__(self, store: Store, kubevirt_version: Callable[[], str]) -> None:
        self.store = store
        self.kubevirt_version = kubevirt_version

    def resources(self, version: str) -> list[dict[str, Any]]:
        return [{"name": "virtualmachines/migrate", "singularName": "", "namespaced": True, "kind": "",
                 "verbs": None}]  # fmt: skip

    async def handle(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        if path == ["version"] and request.method == "GET":
            info = {"gitVersion": self.kubevirt_version(), "gitCommit": "", "gitTreeState": "clean",
                    "buildDate": "", "compiler": "gc", "platform": "linux/amd64"}  # fmt: skip
            return json_response(info)
        if path == ["healthz"] and request.method == "GET":
            return json_response({"apiserver": {"connectivity": "ok"}})
        is_migrate = len(path) == 5 and path[0] == "namespaces" and path[2] == "virtualmachines"
        if is_migrate and path[4] == "migrate" and request.method == "PUT":
            return await self._migrate(request, path[1], path[3])
        raise ApiError(404, "the server could not find the requested resource", "NotFound")

    async def _migrate(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        raw = await request.read()
        options: dict[str, Any] = json.loads(raw) if raw else {}
        if self.store.try_get("virtualmachines", namespace, name) is None:
            raise _not_found(name)
        vmi = self.store.try_get("virtualmachineinstances", namespace, name)
        if vmi is None:
            raise ApiError(404, f'virtualmachineinstance.kubevirt.io "{name}" not found', "NotFound")
        if (vmi.get("status") or {}).get("phase") != "Running":
            raise ApiError(409, f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": '
                           f"{VM_NOT_RUNNING}", "Conflict")  # fmt: skip
        spec: dict[str, Any] = {"vmiName": name}
        if options.get("addedNodeSelector"):
            spec["addedNodeSelector"] = options["addedNodeSelector"]
        meta = {"generateName": VIRTCTL_MIGRATE_PREFIX, "namespace": namespace}
        body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": meta,
                "spec": spec}  # fmt: skip
        try:
            await self.store.create("virtualmachineinstancemigrations", body, namespace,
                                    dry_run=bool(options.get("dryRun")))  # fmt: skip
        except (ApiError, AdmissionDenied) as exc:
            message = exc.message
            if isinstance(exc, AdmissionDenied):
                message = exc.to_api_error().message
            raise ApiError(500, f"Internal error occurred: {message}", "InternalError") from exc
        return web.Response(status=202)
