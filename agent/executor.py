"""Performs the lifecycle's API actions and turns their outcomes back into observations.

Why a separate piece: the lifecycle (``agent.lifecycle``) says *what* to do — create a migration,
cancel one, read what a RestartRequired is about — as values; this module does it through the API
(``agent.kube``, the only code that talks to Kubernetes), one supervised task per call so the loop
never waits on the API server, and posts the result to the VMI's inbox: :class:`Created`,
:class:`CreateFailed` with a typed outcome (``agent.kube.classify``), :class:`CreateAbandoned` when
leadership is lost mid-call, :class:`CancelFailed`, :class:`RestartChecked`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from agent.kube import classify
from agent.lifecycle import (
    CancelFailed,
    CreateAbandoned,
    Created,
    CreateFailed,
    Observation,
    RestartChecked,
)
from agent.model import Key
from agent.restart import RestartCheck, check_restart

log = structlog.get_logger(__name__)


class MigrationApi(Protocol):
    """What the executor needs from ``agent.kube`` (kept narrow so tests can see every call)."""

    async def create_vmim(self, namespace: str, vmi_name: str) -> Mapping[str, Any]: ...

    async def delete_vmim(self, namespace: str, name: str) -> None: ...

    async def restart_inputs(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None: ...


Post = Callable[[Key, Observation], None]


class Executor:
    def __init__(
        self, api: MigrationApi | None, post: Post, on_send: Callable[[Key], None] | None = None
    ) -> None:
        self.api = api
        self.post = post
        self.on_send = on_send
        self._tg: asyncio.TaskGroup | None = None
        #: creates in flight by VMI (cancelled when leadership is lost)
        self.creates: dict[Key, asyncio.Task[None]] = {}

    def bind(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    @property
    def can_act(self) -> bool:
        return self.api is not None and self._tg is not None

    def create(self, key: Key) -> None:
        assert self._tg is not None
        self.creates[key] = self._tg.create_task(self._create(key), name=f"create-{key[0]}/{key[1]}")

    async def _create(self, key: Key) -> None:
        assert self.api is not None
        if self.on_send is not None:
            self.on_send(key)
        try:
            obj = await self.api.create_vmim(*key)
        except asyncio.CancelledError:
            self.post(key, CreateAbandoned())
            raise
        except Exception as exc:
            self.post(key, CreateFailed(classify(exc)))
            return
        finally:
            self.creates.pop(key, None)
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        self.post(key, Created(str(meta.get("name", "")) if isinstance(meta, Mapping) else ""))

    def cancel(self, key: Key, name: str) -> None:
        assert self._tg is not None
        self._tg.create_task(self._cancel(key, name), name=f"cancel-{key[0]}/{name}")

    async def _cancel(self, key: Key, name: str) -> None:
        assert self.api is not None
        try:
            await self.api.delete_vmim(key[0], name)
        except Exception as exc:
            self.post(key, CancelFailed(str(exc)))
            return
        log.info("migration_cancelled", vmi=f"{key[0]}/{key[1]}", vmim=name)

    def check_restart(self, key: Key, generation: int, *, live_update: bool) -> None:
        if not self.can_act:  # no API (tests, plan): the condition is trusted
            self.post(
                key, RestartChecked(generation, RestartCheck(True, "the VM's start revision is not read"))
            )
            return
        assert self._tg is not None
        self._tg.create_task(self._check_restart(key, generation, live_update), name=f"restart-{key[1]}")

    async def _check_restart(self, key: Key, generation: int, live_update: bool) -> None:
        assert self.api is not None
        try:
            inputs = await self.api.restart_inputs(*key)
        except Exception as exc:
            check = RestartCheck(True, f"could not read the VM's start revision to check it: {exc}")
        else:
            check = (
                check_restart(*inputs, live_update=live_update)
                if inputs is not None
                else RestartCheck(True, "the VM's start revision is not readable")
            )
        log.info("restart_required_checked", vmi=f"{key[0]}/{key[1]}", needed=check.needed, why=check.reason)
        self.post(key, RestartChecked(generation, check))

    def abandon_creates(self) -> None:
        """Leadership lost: a lost leader stops creating at once (each posts :class:`CreateAbandoned`)."""
        for task in list(self.creates.values()):
            task.cancel()


__all__ = ["Executor", "MigrationApi"]
