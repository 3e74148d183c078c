"""The agent's own names: what it writes into the cluster and a user or a judge can select it by.

Separate from :mod:`agent.kubevirt` (KubeVirt's facts): these are the agent's choices, documented for
users in ``docs/install.md`` and ``docs/architecture.md``, and read by the simulator's report to
tell the agent's actions from KubeVirt's. Metric names live in :mod:`metrics.definitions`.
"""

from __future__ import annotations

from typing import Final

#: Label the agent puts on the VMIMs it creates (and finds them by after a restart).
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "hotplug-agent"
#: VM label to opt out: ``hotplug-agent.io/auto-migrate: "false"``.
LABEL_AUTO_MIGRATE: Final = "hotplug-agent.io/auto-migrate"
OPT_OUT_VALUE: Final = "false"
#: ``generateName`` prefix of the agent's VMIMs: ``hotplug-<vmi>-``.
GENERATE_NAME_PREFIX: Final = "hotplug-"
#: ``source.component`` and ``reportingComponent`` of the agent's Events; the default client identity.
COMPONENT: Final = "hotplug-agent"

#: Event reasons; they show in ``kubectl describe vm`` and ``kubectl get events``.
REASON_MIGRATION_STARTED: Final = "HotplugMigrationStarted"
REASON_HOTPLUG_COMPLETED: Final = "HotplugCompleted"
REASON_MIGRATION_RETRY: Final = "HotplugMigrationRetry"
REASON_GAVE_UP: Final = "HotplugMigrationGaveUp"
REASON_BLOCKED: Final = "HotplugBlocked"
REASON_SLOTS_EXHAUSTED: Final = "HotplugSlotsExhausted"
