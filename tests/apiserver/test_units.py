"""Pure units: RFC 7386 / RFC 6902 examples, selector parsing, generation rules."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.apiserver.errors import ApiError
from simulator.apiserver.meta import next_generation
from simulator.apiserver.patch import PatchError, json_patch, merge_patch
from simulator.apiserver.registry import Registry
from simulator.apiserver.selectors import labels_match, parse_label_selector

# RFC 7386 Appendix A
RFC7386: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_mutate_input() -> None:
    target = {"a": {"b": [1]}}
    merge_patch(target, {"a": {"b": [2], "c": 1}})
    assert target == {"a": {"b": [1]}}


def test_json_patch_rfc6902_examples() -> None:
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar",
        "baz": "qux",
    }
    assert json_patch({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]
    }
    assert json_patch({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}]) == {
        "foo": ["bar", "baz"]
    }
    assert json_patch(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
    ) == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert json_patch(
        {"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}]
    ) == {"foo": ["all", "cows", "eat", "grass"]}
    assert json_patch({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}]) == {"/": 9, "~1": 10}
    with pytest.raises(PatchError) as exc:
        json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert exc.value.test_failed
    with pytest.raises(PatchError):
        json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    with pytest.raises(PatchError):
        json_patch({"foo": [1]}, [{"op": "add", "path": "/foo/5", "value": 2}])
    with pytest.raises(PatchError) as exc:
        json_patch({}, [{"op": "nope", "path": "/x"}])
    assert exc.value.malformed


def test_json_patch_is_atomic_on_input() -> None:
    doc = {"a": [1, 2]}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/a/0"}, {"op": "test", "path": "/a/0", "value": 1}])
    assert doc == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("selector", "labels", "match"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (b,c),d", {"a": "c", "d": ""}, True),
        ("a notin (b)", {}, True),
        ("a notin (b)", {"a": "b"}, False),
        ("!a", {"a": "x"}, False),
        ("a,b", {"a": "1"}, False),
        ("kubevirt.io/vmi-name=vm1", {"kubevirt.io/vmi-name": "vm1"}, True),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], match: bool) -> None:
    reqs = parse_label_selector(selector)
    assert labels_match(reqs, {"metadata": {"labels": labels}}) is match


def test_bad_label_selector_raises_400() -> None:
    with pytest.raises(ApiError) as exc:
        parse_label_selector("a in (b")
    assert exc.value.code == 400


def test_generation_policies() -> None:
    reg = Registry()
    vm, vmi, lease = reg.resolve("vm"), reg.resolve("vmi"), reg.resolve("leases")
    old = {"metadata": {"generation": 3}, "spec": {"a": 1}, "status": {"x": 1}}
    assert next_generation(vm, old, {**old, "status": {"x": 2}}) == 3
    assert next_generation(vm, old, {**old, "spec": {"a": 2}}) == 4
    assert next_generation(vmi, old, {**old, "status": {"x": 2}}) == 4
    assert next_generation(vmi, old, {**old, "metadata": {"labels": {"a": "b"}}}) == 3
    assert next_generation(lease, {"metadata": {}, "spec": {}}, {"metadata": {}, "spec": {"x": 1}}) is None
