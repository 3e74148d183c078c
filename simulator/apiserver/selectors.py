"""Label and field selectors, parsed once per request and matched per object.

Syntax follows `k8s.io/apimachinery/pkg/labels` (=, ==, !=, in, notin, exists, !key) and
`pkg/fields` (=, ==, != on dotted paths).  Parsing errors are 400 BadRequest like the real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.apiserver.errors import ApiError

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\((.*)\))?\s*$")
_OP_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as in apimachinery.
        return not present or labels[self.key] not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` value lists."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        m = _OP_RE.match(part)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, frozenset([m.group(3)])))
            continue
        m = _SET_RE.match(part)
        if m and not (m.group(1) and m.group(3)):
            neg, key, setop, vals = m.groups()
            if setop:
                values = frozenset(v.strip() for v in vals.split(",") if v.strip())
                reqs.append(Requirement(key, setop, values))
            else:
                reqs.append(Requirement(key, "!" if neg else "exists"))
            continue
        raise ApiError(400, f'unable to parse requirement: found "{part}", invalid label selector')
    return reqs


def labels_match(reqs: list[Requirement], obj: Mapping[str, Any]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    value: str
    negate: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        cur: Any = obj
        for key in self.path:
            cur = cur.get(key) if isinstance(cur, Mapping) else None
        actual = "" if cur is None else (str(cur).lower() if isinstance(cur, bool) else str(cur))
        return (actual != self.value) if self.negate else (actual == self.value)


#: Fields every resource supports; custom resources also get any cheap dotted path (documented).
BASE_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def parse_field_selector(
    text: str | None, allowed: Callable[[str], bool] | None = None
) -> list[FieldRequirement]:
    if not text:
        return []
    out: list[FieldRequirement] = []
    for part in _split_top_level(text):
        m = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.groups()
        if allowed is not None and not allowed(name):
            raise ApiError(400, f"field label not supported: {name}")
        out.append(FieldRequirement(tuple(name.split(".")), value, op == "!="))
    return out


def fields_match(reqs: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all(r.matches(obj) for r in reqs)


def exact_name(reqs: list[FieldRequirement]) -> str | None:
    """The name a `metadata.name=` selector pins, so lookups can skip scanning (kubectl get -w NAME)."""
    for r in reqs:
        if r.path == ("metadata", "name") and not r.negate:
            return r.value
    return None
