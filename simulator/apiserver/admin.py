"""The `/sim/...` admin endpoints: fault control and counters for tests running in another process.

    GET    /sim/faults                 → {"rules": [...]}
    POST   /sim/faults                 ← FaultRule fields as JSON → {"id": N}
    DELETE /sim/faults                 → clear all rules and forced expiries
    DELETE /sim/faults/{id}            → remove one rule
    POST   /sim/watches/drop           ← {"resource": plural|null, "mode": "abort"|"eof"} → {"dropped": N}
    POST   /sim/watches/expire         ← {"resource": plural|null, "count": N|null}
                                         (the next watches from an RV get 410 Expired)
    POST   /sim/compact                → {"resourceVersion": "N"} (history forgotten: older RVs → 410)
    GET    /sim/requests               → {"counts": [{"verb", "resource", "count"}...]}

The same bearer token as the API applies when one is configured.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Protocol

from aiohttp import web

from simulator.apiserver.errors import ApiError
from simulator.apiserver.faults import FaultRule, Faults
from simulator.apiserver.watch import encode


class AdminTarget(Protocol):
    """What the admin endpoints act on (the ``ApiServer``; a protocol, so this module needs no import
    of the server that mounts it)."""

    @property
    def faults(self) -> Faults: ...

    @property
    def request_counts(self) -> Counter[tuple[str, str]]: ...

    def compact(self) -> int: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(body), status=status, content_type="application/json")


async def _read(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object")
    return data


def make_admin(server: AdminTarget) -> Any:
    async def admin(request: web.Request) -> web.StreamResponse:
        faults = server.faults
        parts = [p for p in request.path.split("/") if p][1:]
        m = request.method
        if parts == ["faults"] and m == "GET":
            return _json({"rules": [r.to_dict() for r in faults.rules]})
        if parts == ["faults"] and m == "POST":
            return _json({"id": faults.add(FaultRule.from_dict(await _read(request)))}, 201)
        if parts == ["faults"] and m == "DELETE":
            faults.clear()
            return _json({})
        if len(parts) == 2 and parts[0] == "faults" and m == "DELETE" and parts[1].isdigit():
            if not faults.remove(int(parts[1])):
                raise ApiError(404, f"no fault rule {parts[1]}")
            return _json({})
        if parts == ["watches", "drop"] and m == "POST":
            body = await _read(request)
            return _json({"dropped": faults.drop_watches(body.get("resource"), body.get("mode", "abort"))})
        if parts == ["watches", "expire"] and m == "POST":
            body = await _read(request)
            faults.force_expired(body.get("resource"), body.get("count", 1))
            return _json({})
        if parts == ["compact"] and m == "POST":
            return _json({"resourceVersion": str(server.compact())})
        if parts == ["requests"] and m == "GET":
            counts = [{"verb": v, "resource": r, "count": n} for (v, r), n in server.request_counts.items()]
            return _json({"counts": counts})
        raise ApiError(404, f"unknown admin endpoint {request.method} {request.path}")

    return admin
