"""What a failed API call of the agent's own means, as values: classified once, in ``agent.kube``.

Why types and not exceptions or strings: the lifecycle (``agent.lifecycle``) decides what a failed
create means for a hot plug (try again later, blocked, back off); it must not search message texts or
probe exception attributes. ``agent.kube.classify`` turns the API server's ``Status`` (code, reason,
message) into one of these, and nothing else interprets API errors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MigrationInFlight:
    """KubeVirt's admission: another migration of this VMI is unfinished (``in-flight migration
    detected``) — someone else's, or ours the cache has not shown yet. Busy, not a failure."""

    message: str


@dataclass(frozen=True, slots=True)
class MigrationRejected:
    """KubeVirt's admission refuses to migrate this VMI at all (``Cannot migrate VMI``)."""

    message: str


@dataclass(frozen=True, slots=True)
class Forbidden:
    """403: the agent's ServiceAccount lacks ``verb`` on ``resource`` (the chart's RBAC)."""

    message: str
    verb: str
    resource: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """409 that is not KubeVirt's in-flight answer: a write raced another one."""

    message: str


@dataclass(frozen=True, slots=True)
class Transient:
    """Anything else: a server error, a timeout, no answer. ``status`` 0 = no HTTP answer."""

    message: str
    status: int


Outcome = MigrationInFlight | MigrationRejected | Forbidden | Conflict | Transient

__all__ = ["Conflict", "Forbidden", "MigrationInFlight", "MigrationRejected", "Outcome", "Transient"]
