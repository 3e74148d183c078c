"""The agent's own names: what it writes into the cluster and a user or a judge can select it by.

Separate from :mod:`agent.kubevirt` (KubeVirt's facts): these are the agent's choices, documented for
users in ``docs/install.md`` and ``docs/architecture.md``, and read by the simulator's report to
tell the agent's actions from KubeVirt's. Metric names live in :mod:`metrics.definitions`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

#: Label the agent puts on the VMIMs it creates (and finds them by after a restart).
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "hotplug-agent"
#: VM label (or annotation) to opt out: ``hotplug-agent.io/auto-migrate: "false"``.
LABEL_AUTO_MIGRATE: Final = "hotplug-agent.io/auto-migrate"
OPT_OUT_VALUE: Final = "false"
#: VM annotation ordering the agent's queue: an integer, higher first, default 0.
ANNOTATION_PRIORITY: Final = "hotplug-agent.io/priority"
#: The range a priority is clamped to (a typo like 1e99 must not overflow anything).
PRIORITY_RANGE: Final = (-1_000_000, 1_000_000)
#: ``generateName`` prefix of the agent's VMIMs: ``hotplug-<vmi>-``.
GENERATE_NAME_PREFIX: Final = "hotplug-"
#: ``source.component`` and ``reportingComponent`` of the agent's Events; the default client identity.
COMPONENT: Final = "hotplug-agent"


class EventReason(StrEnum):
    """Reasons of the agent's Events on the VM (``kubectl describe vm``, ``kubectl get events``)."""

    MIGRATION_STARTED = "HotplugMigrationStarted"
    HOTPLUG_COMPLETED = "HotplugCompleted"
    MIGRATION_RETRY = "HotplugMigrationRetry"
    GAVE_UP = "HotplugMigrationGaveUp"
    BLOCKED = "HotplugBlocked"
    SLOTS_EXHAUSTED = "HotplugSlotsExhausted"
    WAITING = "HotplugWaiting"
