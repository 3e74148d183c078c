"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), on plain JSON values.

Both return new values and never mutate the stored object, so stored objects can be shared by
reference with watch events and readers.
"""

from __future__ import annotations

import copy
from typing import Any

from simulator.apiserver.meta import clone


class PatchError(Exception):
    """A patch that cannot be applied; `test_failed` distinguishes a failed `test` op."""

    def __init__(self, message: str, test_failed: bool = False, malformed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed
        #: The patch document itself is unreadable (400), as opposed to not applicable (422).
        self.malformed = malformed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f"missing path component {tok!r}")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(f"cannot traverse into a scalar at {tok!r}")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"missing value at {'/'.join(tokens)!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError("cannot index a scalar")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the document root")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"missing value at {'/'.join(tokens)!r}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise PatchError("cannot remove from a scalar")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 on a deep copy of `doc`: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations", malformed=True)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}", malformed=True)
        if op["op"] not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError(f"Unexpected kind: {op['op']}", malformed=True)
    out = clone(doc)
    for op in operations:
        out = _apply_op(out, op, _parse_pointer(str(op["path"])))
    return out


def _apply_op(out: Any, op: dict[str, Any], tokens: list[str]) -> Any:
    """One checked operation on `out` (changed in place where it can be); the new document."""
    kind = op["op"]
    if kind == "add":
        return _add(out, tokens, copy.deepcopy(op.get("value")))
    if kind == "remove":
        _remove(out, tokens)
        return out
    if kind == "replace":
        if not tokens:
            return copy.deepcopy(op.get("value"))
        _remove(out, tokens)
        return _add(out, tokens, copy.deepcopy(op.get("value")))
    if kind in ("move", "copy"):
        if "from" not in op:
            raise PatchError(f"{kind} needs 'from'")
        src = _parse_pointer(str(op["from"]))
        value = _remove(out, src) if kind == "move" else copy.deepcopy(_get(out, src))
        return _add(out, tokens, value)
    # test (json_patch checked the kinds)
    try:
        actual = _get(out, tokens)
    except PatchError as exc:
        raise PatchError(f"testing value {op['path']} failed: {exc}", test_failed=True) from exc
    if actual != op.get("value"):
        raise PatchError(f"testing value {op['path']} failed: test failed", test_failed=True)
    return out
