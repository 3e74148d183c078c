"""KubeVirt's admission webhooks, played as in-process hooks of the embedded API server.

* ``virtualmachine-validator.kubevirt.io`` (HEAD:pkg/network/admitter/admit.go
  ``validateInterfaceStateValue``):
  interface ``state`` rules on VM create/update.
* ``migrations-mutator.kubevirt.io`` (HEAD:…/mutators/migration-create-mutator.go): adds label
  ``kubevirt.io/vmi-name`` and the finalizer ``kubevirt.io/migrationJobFinalize``.
* ``migration-create-validator.kubevirt.io`` (HEAD:…/admitters/migration-create-admitter.go): VMI missing,
  finalized VMI, another unfinished VMIM for the VMI ("in-flight"), ``LiveMigratable=False`` ("Cannot
  migrate").

HTTP codes as KubeVirt's webhooks answer them (checked on real virt-api by tests/kubevirt): 400 for
every migration denial, 422 for the VM's interface-state denial; "not migratable" is checked before "in
flight". Clients tell the two migration denials apart by their text only.

The in-flight check reads an index of unfinished VMIMs per VMI kept from the server's event observer:
O(1) per request, and consistent with admission because both run synchronously in the store's write path.
"""

from __future__ import annotations

from typing import Any, Final

from agent.kubevirt import COND_LIVE_MIGRATABLE, GROUP, LABEL_VMI_NAME, VMIMS, VMS, is_final
from simulator.apiserver import AdmissionDenied, AdmissionRequest
from simulator.kubevirt import rules
from simulator.kubevirt.migration import FINALIZER

VM_WEBHOOK: Final = "virtualmachine-validator.kubevirt.io"
MIGRATION_VALIDATOR: Final = "migration-create-validator.kubevirt.io"
#: What KubeVirt's webhook denials answer (its Status carries no other code).
CODE_DENIED: Final = 400

Key = tuple[str, str]


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


class KubeVirtAdmission:
    """Admission hooks plus the unfinished-migrations index they need."""

    def __init__(self) -> None:
        #: (namespace, vmi name) → {vmim name: uid} of VMIMs not Succeeded/Failed.
        self.unfinished: dict[Key, dict[str, str]] = {}

    def observe(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        """Event observer: keeps ``unfinished`` current on every stored VMIM mutation.

        The embedded server's CRDs have no structural schema, so a VMIM stored past admission (the
        bad-input tests do that) may have any shape: a field that is not an object counts as empty.
        """
        if resource != VMIMS:
            return
        meta = _object(obj, "metadata")
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        vmi = str(_object(obj, "spec").get("vmiName", ""))
        phase = str(_object(obj, "status").get("phase", ""))
        key = (ns, vmi)
        if event_type == "DELETED" or is_final(phase):
            bucket = self.unfinished.get(key)
            if bucket is not None:
                bucket.pop(name, None)
                if not bucket:
                    del self.unfinished[key]
        else:
            self.unfinished.setdefault(key, {})[name] = str(meta.get("uid", ""))

    async def __call__(self, req: AdmissionRequest) -> None:
        if req.group != GROUP or req.subresource:
            return
        if req.resource == VMS and req.operation in ("CREATE", "UPDATE"):
            self._validate_vm(req)
        elif req.resource == VMIMS and req.operation == "CREATE":
            self._mutate_vmim(req)
            self._validate_vmim(req)

    def _validate_vm(self, req: AdmissionRequest) -> None:
        template = ((req.object.get("spec") or {}).get("template") or {}).get("spec") or {}
        errors = rules.validate_interface_states(template)
        if errors:
            # KubeVirt's ToAdmissionResponse: 422 Invalid, the causes' messages joined with ", ".
            raise AdmissionDenied(422, ", ".join(errors), webhook_name=VM_WEBHOOK)

    def _mutate_vmim(self, req: AdmissionRequest) -> None:
        vmi = (req.object.get("spec") or {}).get("vmiName")
        if not vmi:
            return
        meta = req.object.setdefault("metadata", {})
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels[LABEL_VMI_NAME] = str(vmi)
        finalizers = meta.get("finalizers")
        if not isinstance(finalizers, list):
            finalizers = meta["finalizers"] = []
        if FINALIZER not in finalizers:
            finalizers.append(FINALIZER)

    def _validate_vmim(self, req: AdmissionRequest) -> None:
        vmi_name = str((req.object.get("spec") or {}).get("vmiName") or "")
        ns = req.namespace
        if not vmi_name:
            raise AdmissionDenied(400, "spec.vmiName is required", webhook_name=MIGRATION_VALIDATOR)
        vmi = req.server.try_get("virtualmachineinstances", ns, vmi_name)
        if vmi is None:
            raise AdmissionDenied(
                400, f'the VMI "{ns}/{vmi_name}" does not exist', webhook_name=MIGRATION_VALIDATOR
            )
        if (vmi.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise AdmissionDenied(
                400, "Cannot migrate VMI in finalized state.", webhook_name=MIGRATION_VALIDATOR
            )
        # KubeVirt's order: migratable first, then in flight (migration-create-admitter.go Admit)
        for cond in (vmi.get("status") or {}).get("conditions") or []:
            if (
                isinstance(cond, dict)
                and cond.get("type") == COND_LIVE_MIGRATABLE
                and cond.get("status") == "False"
            ):
                raise AdmissionDenied(
                    CODE_DENIED,
                    f"Cannot migrate VMI, Reason: {cond.get('reason', '')}, Message: "
                    f"{cond.get('message', '')}",
                    webhook_name=MIGRATION_VALIDATOR,
                )
        active = self.unfinished.get((ns, vmi_name))
        if active:
            uid = next(iter(active.values()))
            raise AdmissionDenied(
                CODE_DENIED,
                f"in-flight migration detected. Active migration job ({uid}) is currently already in "
                f"progress for VMI {vmi_name}.",
                webhook_name=MIGRATION_VALIDATOR,
            )
