"""Informer against the embedded API server: list+watch, relist on 410, reconnects, bookmarks, bad objects."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.informer import Informer
from agent.kube import VMIS, VMS, KubeClient
from agent.startup import connect
from simulator.apiserver import ApiServer, FaultRule
from tests.agent_io.conftest import Rec, create_vm, eventually, parse_rec

Event = tuple[str, Rec | None, Rec | None]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.restarts: list[tuple[str, str]] = []
        self.invalid: list[str] = []

    def __call__(self, etype: str, old: Rec | None, new: Rec | None) -> None:
        self.events.append((etype, old, new))

    def names(self, etype: str) -> list[str]:
        return [(n or o).name for t, o, n in self.events if t == etype and (n or o) is not None]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def running(informer: Informer[Any]) -> AsyncIterator[Informer[Any]]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 5)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not task.cancelled() or True


async def watching(server: ApiServer, n: int = 1) -> None:
    """Wait until ``n`` watches are open on the server (sync happens before the watch connects)."""
    await eventually(lambda: len(list(server.store.watchers())) >= n, what=f"{n} open watches")


def make(kube: KubeClient, rec: Recorder, **kw: Any) -> Informer[Rec]:
    kw.setdefault("backoff_initial", 0.02)
    kw.setdefault("backoff_max", 0.1)
    return Informer(
        kube,
        kw.pop("resource", VMS),
        parse_rec,
        handlers=[rec],
        on_restart=lambda res, reason: rec.restarts.append((res, reason)),
        on_invalid=rec.invalid.append,
        **kw,
    )


async def test_list_then_watch_delivers_adds_updates_deletes(kube: KubeClient) -> None:
    for name in ("a", "b", "c"):
        await create_vm(kube, name)
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        assert inf.has_synced and len(inf) == 3
        assert sorted(rec.names("ADDED")) == ["a", "b", "c"]
        await create_vm(kube, "d")
        await kube.merge_patch(VMS, "default", "a", {"metadata": {"labels": {"color": "red"}}})
        await kube.delete(VMS, "default", "b")
        await eventually(lambda: "b" in rec.names("DELETED"), what="DELETED b")
        assert "d" in rec.names("ADDED")
        modified = [(o, n) for t, o, n in rec.events if t == "MODIFIED"]
        assert modified and modified[0][0] is not None and modified[0][0].color == ""
        assert modified[0][1] is not None and modified[0][1].color == "red"
        assert inf.get("default", "a") == modified[0][1]
        assert inf.get("default", "b") is None
        assert inf.lists == 1


@dataclasses.dataclass(frozen=True)
class Colour:
    """A record that, like ``VMIRecord``, leaves the resourceVersion out of its equality."""

    name: str
    rv: str = dataclasses.field(compare=False)
    color: str


def parse_colour(raw: dict[str, Any]) -> Colour:
    meta = raw["metadata"]
    return Colour(meta["name"], meta.get("resourceVersion", ""), (meta.get("labels") or {}).get("color", ""))


async def test_an_update_that_changes_nothing_the_record_holds_keeps_the_cached_record(
    kube: KubeClient,
) -> None:
    """The new record dies young (no new long-lived objects for the cyclic GC); handlers still hear
    the update, with the cached record as both old and new."""
    await create_vm(kube, "a", color="red")
    seen: list[tuple[str, Colour | None, Colour | None]] = []
    inf = Informer(kube, VMS, parse_colour, handlers=[lambda t, o, n: seen.append((t, o, n))])
    async with running(inf):
        cached = inf.get("default", "a")
        assert cached is not None
        await kube.merge_patch(VMS, "default", "a", {"metadata": {"labels": {"size": "big"}}})
        await eventually(lambda: len(seen) == 2, what="the label update")
        assert seen[1] == ("MODIFIED", cached, cached) and seen[1][2] is cached
        assert inf.get("default", "a") is cached
        await kube.merge_patch(VMS, "default", "a", {"metadata": {"labels": {"color": "blue"}}})
        await eventually(lambda: len(seen) == 3, what="the colour change")
        assert seen[2][1] is cached and seen[2][2] is inf.get("default", "a") and seen[2][2] != cached


async def test_forced_410_relists_and_synthesises_deletes(kube: KubeClient, server: ApiServer) -> None:
    for name in ("a", "b"):
        await create_vm(kube, name)
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        # Keep the informer off the server while "b" is deleted, so it can only learn it by relisting.
        await watching(server)
        rule = server.faults.add(FaultRule(verbs=("watch",), resources=("virtualmachines",), error_rate=1.0))
        server.faults.drop_watches("virtualmachines")
        await eventually(lambda: any(r == "error" for _, r in rec.restarts), what="watch restart")
        await kube.delete(VMS, "default", "b")
        await create_vm(kube, "c")
        server.faults.force_expired("virtualmachines", count=1)
        server.faults.remove(rule)
        await eventually(
            lambda: "b" in rec.names("DELETED") and "c" in rec.names("ADDED"), what="relist diff"
        )
        assert ("virtualmachines", "gone") in rec.restarts
        assert inf.lists == 2
        assert sorted(k[1] for k in inf.cache) == ["a", "c"]
        # An unchanged object is not re-emitted by the relist.
        assert rec.names("ADDED").count("a") == 1 and "a" not in rec.names("MODIFIED")


async def test_410_error_event_relists(kube: KubeClient, server: ApiServer) -> None:
    await create_vm(kube, "a")
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        await watching(server)
        server.faults.force_expired("virtualmachines", count=1)
        server.faults.drop_watches("virtualmachines", mode="eof")
        await eventually(lambda: inf.lists == 2, what="relist")
        assert ("virtualmachines", "gone") in rec.restarts
        await create_vm(kube, "b")
        await eventually(lambda: "b" in rec.names("ADDED"), what="watch resumed after relist")


async def test_reconnects_after_drop_without_relisting(kube: KubeClient, server: ApiServer) -> None:
    await create_vm(kube, "a")
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        await watching(server)
        assert server.faults.drop_watches("virtualmachines", mode="abort") == 1
        await eventually(lambda: len(rec.restarts) == 1, what="restart counted")
        await create_vm(kube, "b")
        await eventually(lambda: "b" in rec.names("ADDED"), what="event after reconnect")
        await watching(server)
        server.faults.drop_watches("virtualmachines", mode="eof")
        await create_vm(kube, "c")
        await eventually(lambda: "c" in rec.names("ADDED"), what="event after clean close")
        assert inf.lists == 1, "a dropped watch resumes from its RV, no relist"
        assert [r for _, r in rec.restarts][-1] == "closed"
        assert rec.restarts[0][1] in ("error", "closed")


async def test_server_timeout_closes_and_rewatches(kube: KubeClient) -> None:
    rec = Recorder()
    async with running(make(kube, rec, watch_timeout=(1, 1))) as inf:
        await eventually(
            lambda: ("virtualmachines", "closed") in rec.restarts, timeout=5, what="timeout close"
        )
        await create_vm(kube, "late")
        await eventually(lambda: inf.get("default", "late") is not None, what="event after rewatch")
        assert inf.lists == 1


async def test_read_inactivity_timeout_restarts_a_silent_watch(kubeconfig: Any, tmp_path: Any) -> None:
    srv = ApiServer(bookmark_interval=60.0)
    await srv.start()
    try:
        path = srv.write_kubeconfig(tmp_path / "silent")
        client = await connect(str(path))
        try:
            rec = Recorder()
            async with running(make(client, rec, inactivity_timeout=0.3)) as inf:
                await eventually(lambda: ("virtualmachines", "timeout") in rec.restarts, what="inactivity")
                await create_vm(client, "x")
                await eventually(lambda: inf.get("default", "x") is not None, what="event after timeout")
        finally:
            await client.close()
    finally:
        await srv.stop()


async def test_bookmarks_advance_the_resource_version(kube: KubeClient) -> None:
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        start = int(inf.resource_versions[""])
        # Writes to another resource move the cluster-wide RV; only bookmarks tell this informer.
        for name in ("i1", "i2", "i3"):
            body = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"domain": {"devices": {}}},
            }
            await kube.create(VMIS, "default", body)
        await eventually(lambda: int(inf.resource_versions[""]) >= start + 3, what="bookmark RV")
        assert rec.events == []


async def test_invalid_objects_are_counted_and_skipped(kube: KubeClient) -> None:
    await create_vm(kube, "good")
    await create_vm(kube, "broken", bad="true")
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        assert set(inf.cache) == {("default", "good")}
        assert rec.invalid == ["virtualmachines"] and inf.invalid == 1
        # Fixed: appears. Broken again: disappears (a stale record is worse than none).
        await kube.merge_patch(VMS, "default", "broken", {"metadata": {"labels": {"bad": "false"}}})
        await eventually(lambda: inf.get("default", "broken") is not None, what="fixed object added")
        await kube.merge_patch(VMS, "default", "good", {"metadata": {"labels": {"bad": "true"}}})
        await eventually(lambda: inf.get("default", "good") is None, what="broken object dropped")
        assert "good" in rec.names("DELETED")
        assert inf.invalid == 2


async def test_one_watch_per_namespace(kube: KubeClient, server: ApiServer) -> None:
    for ns in ("team-a", "team-b", "team-c"):
        await kube.create(
            __import__("agent.kube", fromlist=["Resource"]).Resource(
                "", "v1", "namespaces", namespaced=False
            ),
            None,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
        await create_vm(kube, "vm", ns)
    rec = Recorder()
    async with running(make(kube, rec, namespaces=["team-a", "team-b"])) as inf:
        assert set(inf.cache) == {("team-a", "vm"), ("team-b", "vm")}
        assert inf.scopes == ("team-a", "team-b")
        await create_vm(kube, "vm2", "team-c")
        await create_vm(kube, "vm2", "team-b")
        await eventually(lambda: inf.get("team-b", "vm2") is not None, what="team-b event")
        assert inf.get("team-c", "vm2") is None
        assert server.request_counts[("watch", "virtualmachines")] >= 2


async def test_list_errors_are_retried_then_sync(kube: KubeClient, server: ApiServer) -> None:
    await create_vm(kube, "a")
    server.faults.add(FaultRule(verbs=("list",), resources=("virtualmachines",), error_rate=1.0, remaining=8))
    kube.retry_attempts = 2
    rec = Recorder()
    async with running(make(kube, rec)) as inf:
        assert len(inf) == 1


async def test_handler_exception_surfaces(kube: KubeClient) -> None:
    await create_vm(kube, "a")

    def boom(etype: str, old: Rec | None, new: Rec | None) -> None:
        raise RuntimeError("handler bug")

    inf = Informer(kube, VMS, parse_rec, handlers=[boom])
    with pytest.raises(RuntimeError, match="handler bug"):
        await asyncio.wait_for(inf.run(), 5)


async def test_paged_relist_diffs_across_pages(kube: KubeClient, server: ApiServer) -> None:
    for i in range(5):
        await create_vm(kube, f"vm-{i}")
    rec = Recorder()
    async with running(make(kube, rec, page_size=2)) as inf:
        assert len(inf) == 5 and inf.lists == 1
        await watching(server)
        rule = server.faults.add(FaultRule(verbs=("watch",), resources=("virtualmachines",), error_rate=1.0))
        server.faults.drop_watches("virtualmachines")
        await eventually(lambda: bool(rec.restarts), what="watch restart")
        await kube.delete(VMS, "default", "vm-0")
        await kube.delete(VMS, "default", "vm-4")
        server.faults.force_expired("virtualmachines", count=1)
        server.faults.remove(rule)
        await eventually(lambda: inf.lists == 2, what="relist")
        assert sorted(rec.names("DELETED")) == ["vm-0", "vm-4"]
        assert sorted(k[1] for k in inf.cache) == ["vm-1", "vm-2", "vm-3"]
