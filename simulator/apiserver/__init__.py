"""The embedded Kubernetes API server of the simulated cluster.

server = ApiServer(token=None, seed=0)
url = await server.start(port=0)
server.write_kubeconfig(path)
...
await server.stop()
"""

from simulator.apiserver.admission import AdmissionDenied, AdmissionHook, AdmissionRequest
from simulator.apiserver.errors import ApiError
from simulator.apiserver.faults import FaultRule, Faults
from simulator.apiserver.httputil import RequestRecord
from simulator.apiserver.registry import RESOURCES, GenerationPolicy, Registry, ResourceType
from simulator.apiserver.server import ApiServer
from simulator.apiserver.store import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    Store,
)

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "RESOURCES",
    "STRATEGIC_MERGE_PATCH",
    "AdmissionDenied",
    "AdmissionHook",
    "AdmissionRequest",
    "ApiError",
    "ApiServer",
    "FaultRule",
    "Faults",
    "GenerationPolicy",
    "Registry",
    "RequestRecord",
    "ResourceType",
    "Store",
]
