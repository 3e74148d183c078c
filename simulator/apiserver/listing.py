"""List responses: continue tokens and the list body, built from stored objects.

Continue tokens are opaque base64 JSON (`{"rv": <list RV>, "start": [namespace, name]}`) like the real
server's.  Later pages are rebuilt at the first page's RV from the watch history (`Store.list_page` with
``at``), so a paged list is one consistent snapshot, as etcd gives; once that RV is compacted: 410.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from simulator.apiserver.errors import ApiError
from simulator.apiserver.registry import ResourceType
from simulator.apiserver.watch import encode


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    rv: int
    continue_token: str = ""
    remaining: int | None = None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def encode_continue(rv: int, last: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(last)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        ns, name = data["start"]
        return int(data["rv"]), (str(ns), str(name))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ApiError(400, f"continue key is not valid: {exc}", "BadRequest") from exc


def list_body(rt: ResourceType, page: Page) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(page.rv)}
    if page.continue_token:
        meta["continue"] = page.continue_token
    if page.remaining is not None:
        meta["remainingItemCount"] = page.remaining
    head = encode({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})
    return head[:-1] + b',"items":[' + b",".join(encode(o) for o in page.items) + b"]}"
