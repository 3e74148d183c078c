"""Every Prometheus series hotplug-agent exports, defined in one place.

Why one module: the Grafana dashboard, the alert rules, ``docs/metrics.md`` and the tests all key on
these names, so a series must never be created ad hoc somewhere else in the agent.  Tests check that
every name a dashboard panel or an alert uses is declared in :data:`SERIES`.

Conventions (Prometheus naming guide plus KubeVirt's monitoring guidelines):

* prefix ``hotplug_agent_``, base units (seconds), ``_total`` on counters;
* histograms carry no per-VM labels (VM identity travels as an exemplar, ``{"vmi": "ns/name"}``,
  rendered only in OpenMetrics), so cardinality stays bounded;
* every label takes values from a closed tuple below, and :class:`HotplugMetrics` creates every known
  label combination at 0 on construction ("avoid missing metrics"), so ``rate()`` and alerts see a
  series from the first scrape instead of an absent one;
* buckets for seconds-to-an-hour durations reuse KubeVirt's
  ``kubevirt_vmi_migration_phase_transition_time_from_creation_seconds`` buckets so quantiles are
  directly comparable with KubeVirt's own dashboards.

Each :class:`HotplugMetrics` owns a private :class:`~prometheus_client.CollectorRegistry` (never the
process-global default), so tests and a simulator running several agents in one process can create as
many as they like. The registry also carries prometheus_client's process and GC collectors
(:data:`RUNTIME_SERIES`: memory, CPU, file descriptors, garbage collections), the series every
Prometheus stack expects from a workload.

No ``*_created`` series: prometheus_client would add one per counter and histogram child (doubling the
scrape and producing names such as ``hotplug_agent_migrations_created``); Prometheus derives resets
from the counters themselves, so importing this module turns them off for the process.
"""

from __future__ import annotations

import itertools
import platform
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

PREFIX: Final = "hotplug_agent_"

# --------------------------------------------------------------------------------------------------
# Closed label value sets.  Changing one is an API change: the dashboard, rules and docs use them.
# --------------------------------------------------------------------------------------------------

#: VMIM phases whose duration we measure (KubeVirt's non-terminal migration phases, in order).
PHASES: Final = ("Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running")
#: Who created the VMIM: this agent, KubeVirt's workload updater, anyone else (virtctl, users).
INITIATORS: Final = ("agent", "kubevirt", "other")
#: How a migration ended.
RESULTS: Final = ("succeeded", "failed", "cancelled")
#: Hot-plug operations.
OPERATIONS: Final = ("plug", "unplug")
#: Why a migration attempt failed.
FAILURE_REASONS: Final = (
    "migration-failed",
    "create-rejected",
    "api-error",
    "deadline-exceeded",
    "verify-failed",
    "forbidden",
)
#: Where a pending hot plug / unplug currently is.
PENDING_STATES: Final = (
    "pending-plug",
    "pending-unplug",
    "waiting-for-kubevirt",
    "settling",
    "bridge-grace",
    "in-progress",
    "verifying",
    "queued",
    "evacuating",
    "no-target-node",
    "outside-window",
)
#: Why a VM with a pending hot plug cannot be migrated by the agent.
BLOCKED_REASONS: Final = (
    "not-live-migratable",
    "slots-exhausted",
    "sriov-unplug",
    "restart-required",
    "opted-out",
    "namespace-not-selected",
    "retries-exhausted",
    "migration-rejected",
    "network-missing",
    "no-target-capacity",
)
#: Slot exhaustion predicted by the slot model before migrating, or observed after it.
SLOT_KINDS: Final = ("predicted", "observed")
#: Which limit held a dispatch back.
RATE_LIMITS: Final = ("cluster", "node", "token-bucket", "capacity")
#: Scope of a migration concurrency cap.
LIMIT_SCOPES: Final = ("cluster", "node")
#: Effective operating mode (``auto`` resolves to ``active`` or ``observe``).
MODES: Final = ("active", "observe", "dry-run")
#: Watched resources (plural resource names, as in the API path).
RESOURCES: Final = (
    "virtualmachines",
    "virtualmachineinstances",
    "virtualmachineinstancemigrations",
    "kubevirts",
    "network-attachment-definitions",
    "nodes",
    "pods",
)
#: Why a watch was restarted: 410 Gone, an error, a read-inactivity timeout, the server closed it.
WATCH_RESTART_REASONS: Final = ("gone", "error", "timeout", "closed")
#: API verbs the agent uses.
API_VERBS: Final = ("get", "list", "watch", "create", "update", "patch", "delete")
#: HTTP status codes worth a series of their own; anything else becomes ``other``, a failure without an
#: HTTP answer (connection refused, timeout) becomes ``network``.
API_ERROR_CODES: Final = (
    "400",
    "401",
    "403",
    "404",
    "409",
    "410",
    "422",
    "429",
    "500",
    "502",
    "503",
    "504",
    "network",
    "other",
)

#: Resources the agent sends requests for (plural names, as in the API path); anything else is ``other``.
API_RESOURCES: Final = (
    *RESOURCES,
    "events",
    "leases",
    "controllerrevisions",
    "discovery",
    "other",
)
#: Answers of a request: the success codes the agent gets, every error code above.
API_CODES: Final = ("200", "201", *API_ERROR_CODES)

#: VMIM terminal phases and the ``result`` they map to (a deleted, unfinished VMIM is ``cancelled``).
TERMINAL_PHASES: Final = {"Succeeded": "succeeded", "Failed": "failed"}

#: KubeVirt's phase-transition buckets (seconds), 0.5 s to one hour.
DURATION_BUCKETS: Final = (
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    90.0,
    120.0,
    180.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
)

#: client-go's ``rest_client_request_duration_seconds`` buckets (5 ms to 60 s), for comparable quantiles.
API_DURATION_BUCKETS: Final = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

#: The agent's own reaction: sub-millisecond to a second (more means the process is saturated).
REACTION_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

#: Queue wait: milliseconds when a slot is free, up to an hour behind the caps in a large drain.
QUEUE_WAIT_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)


@dataclass(frozen=True)
class SeriesSpec:
    """Declaration of one metric family: the single source of truth for name, type, help and labels.

    ``name`` is the exposed sample name for counters (with ``_total``) and the family name otherwise.
    ``labels`` maps each label name to its closed value set, pre-initialised at 0 unless
    ``preinitialise`` is false (a family whose combinations in use depend on the code path, such as
    API requests by verb, resource and code, would otherwise export hundreds of series that never move).
    """

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    buckets: tuple[float, ...] = ()
    preinitialise: bool = True

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.labels)

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Names that can appear in PromQL for this family (histograms expose three)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _spec(
    name: str,
    kind: str,
    help_: str,
    labels: Sequence[tuple[str, Sequence[str]]] = (),
    buckets: Sequence[float] = (),
    *,
    preinitialise: bool = True,
) -> SeriesSpec:
    return SeriesSpec(
        name=PREFIX + name,
        kind=kind,
        help=help_,
        labels=tuple((label, tuple(values)) for label, values in labels),
        buckets=tuple(buckets),
        preinitialise=preinitialise,
    )


# Build info labels are open-ended (versions), so they are not pre-initialised from a closed set.
_BUILD_INFO_LABELS: Final = ("version", "python_version")

MIGRATION_PHASE_DURATION = _spec(
    "migration_phase_duration_seconds",
    "histogram",
    "Time a VirtualMachineInstanceMigration spent in each phase, computed from the VMIM's own "
    "status.phaseTransitionTimestamps when it finishes (phase P lasts from its transition to the next one). "
    "Labelled by phase and by who created the migration.",
    [("phase", PHASES), ("initiator", INITIATORS)],
    DURATION_BUCKETS,
)
MIGRATION_DURATION = _spec(
    "migration_duration_seconds",
    "histogram",
    "End-to-end duration of a finished live migration, from the VMIM's creationTimestamp to its terminal "
    "phase (or to its cancellation), by result and initiator.",
    [("result", RESULTS), ("initiator", INITIATORS)],
    DURATION_BUCKETS,
)
HOTPLUG_LATENCY = _spec(
    "hotplug_latency_seconds",
    "histogram",
    "Time from the agent detecting a pending hot plug or unplug to verifying that the interface is "
    "attached to (or gone from) the guest domain; includes settle windows, queueing and the migration.",
    [("operation", OPERATIONS)],
    DURATION_BUCKETS,
)
MIGRATIONS = _spec(
    "migrations_total",
    "counter",
    "Live migrations of VMIs with hot-plug work that finished, by result and by who created the VMIM.",
    [("result", RESULTS), ("initiator", INITIATORS)],
)
MIGRATION_FAILURES = _spec(
    "migration_failures_total",
    "counter",
    "Failed migration attempts for hot-plug work, by reason: the VMIM failed, its creation was rejected by "
    "admission, an API error, the deadline passed (VMIM cancelled), post-migration verification failed, "
    "or RBAC forbade the request.",
    [("reason", FAILURE_REASONS)],
)
MIGRATION_RETRIES = _spec(
    "migration_retries_total",
    "counter",
    "Migration attempts the agent scheduled again after a failure (with exponential backoff and jitter).",
)
MIGRATION_CREATES = _spec(
    # Not "migrations_created_total": next to hotplug_agent_migrations_total that name reads as its
    # *_created series (which prometheus_client would export unless disabled, as it is here).
    "migration_creates_total",
    "counter",
    "VirtualMachineInstanceMigration objects this agent created (successful create requests). Compare "
    "with hotplug_agent_hotplugs_completed_total to see API economy.",
)
MIGRATIONS_IN_FLIGHT = _spec(
    "migrations_in_flight",
    "gauge",
    "Non-terminal VirtualMachineInstanceMigrations the agent currently sees, by initiator; counts "
    "migrations others started because they share the cluster's concurrency limits.",
    [("initiator", INITIATORS)],
)
MIGRATION_LIMIT = _spec(
    "migration_limit",
    "gauge",
    "Effective concurrency cap on migrations: cluster-wide in-flight cap and per-source-node cap "
    "(from flags, or KubeVirt's parallelMigrationsPerCluster / parallelOutboundMigrationsPerNode).",
    [("scope", LIMIT_SCOPES)],
)
HOTPLUGS_COMPLETED = _spec(
    "hotplugs_completed_total",
    "counter",
    "Hot plugs and unplugs verified complete (interface attached to, or removed from, the guest domain).",
    [("operation", OPERATIONS)],
)
PENDING_HOTPLUGS = _spec(
    "pending_hotplugs",
    "gauge",
    "VMIs with unfinished hot-plug work, by the state that work is in right now.",
    [("state", PENDING_STATES)],
)
OLDEST_PENDING_HOTPLUG = _spec(
    "oldest_pending_hotplug_timestamp_seconds",
    "gauge",
    "Unix time at which the oldest unfinished, not blocked hot plug or unplug was detected; 0 when there "
    "is none. A timestamp rather than an age, so PromQL computes time() - x and the value is valid "
    "even when scrapes stop.",
)
BLOCKED_VMS = _spec(
    "blocked_vms",
    "gauge",
    "VMs with pending hot-plug work that the agent will not migrate, by reason (each also gets a "
    "Kubernetes Event).",
    [("reason", BLOCKED_REASONS)],
)
SLOT_EXHAUSTION = _spec(
    "slot_exhaustion_total",
    "counter",
    "Times a VM was found without a free PCI hot-plug slot: predicted by the slot model before migrating, "
    "or observed after it (Synchronized=False, 'No more available PCI slots').",
    [("kind", SLOT_KINDS)],
)
SLOT_EXHAUSTED_VMS = _spec(
    "slot_exhausted_vms",
    "gauge",
    "VMs currently without a free PCI hot-plug slot for their pending interfaces, predicted or observed.",
    [("kind", SLOT_KINDS)],
)
RATE_LIMITED_DISPATCHES = _spec(
    "rate_limited_dispatches_total",
    "counter",
    "Times a ready migration was held back by a limit: the cluster cap, the per-node cap, the "
    "create-rate token bucket, or the free SR-IOV VFs of a device resource its target pod needs "
    "(capacity).",
    [("limit", RATE_LIMITS)],
)
LEADER = _spec(
    "leader",
    "gauge",
    "1 when this replica holds the leader Lease and acts, 0 when it only watches and exports metrics.",
)
MODE = _spec(
    "mode",
    "gauge",
    "Effective operating mode: the series for the current mode is 1, the others 0.",
    [("mode", MODES)],
)
WATCH_RESTARTS = _spec(
    "watch_restarts_total",
    "counter",
    "Watches restarted, by resource and reason (410 Gone relist, error, read-inactivity timeout, closed "
    "by the server). A steady trickle of 'closed'/'timeout' is normal; bursts of 'gone'/'error' are not.",
    [("resource", RESOURCES), ("reason", WATCH_RESTART_REASONS)],
)
API_ERRORS = _spec(
    "api_errors_total",
    "counter",
    "Kubernetes API requests that failed, by verb and HTTP status code ('network' when there was no "
    "answer, 'other' for codes without their own series).",
    [("verb", API_VERBS), ("code", API_ERROR_CODES)],
)
API_REQUESTS = _spec(
    "rest_client_requests_total",
    "counter",
    "Kubernetes API requests the agent sent (every attempt, retries included), by verb, resource and "
    "HTTP status code ('network' when there was no answer), in the shape of client-go's "
    "rest_client_requests_total.",
    [("verb", API_VERBS), ("resource", API_RESOURCES), ("code", API_CODES)],
    preinitialise=False,
)
API_REQUEST_DURATION = _spec(
    "rest_client_request_duration_seconds",
    "histogram",
    "Latency of Kubernetes API requests by verb, from sending the request to the response headers (for "
    "a watch: until the stream opened), with client-go's rest_client_request_duration_seconds buckets.",
    [("verb", API_VERBS)],
    API_DURATION_BUCKETS,
)
QUEUE_WAIT = _spec(
    "queue_wait_seconds",
    "histogram",
    "Time a hot plug ready to migrate waited for its turn (cluster and per-node caps, the create-rate "
    "token bucket, fair ordering) until the agent created its VirtualMachineInstanceMigration.",
    (),
    QUEUE_WAIT_BUCKETS,
)
REACTION = _spec(
    "reaction_seconds",
    "histogram",
    "The agent's own reaction time, in the agent process (perf_counter at both ends): from the watch "
    "event on which a hot plug became ready to migrate to its VirtualMachineInstanceMigration create "
    "request being sent. Includes the queue wait when the caps hold it back (queue_wait_seconds).",
    (),
    REACTION_BUCKETS,
)
INVALID_OBJECTS = _spec(
    "invalid_objects_total",
    "counter",
    "Watched objects the agent skipped because they could not be parsed (malformed or unexpected shape).",
    [("resource", RESOURCES)],
)
CACHE_SYNCED = _spec(
    "cache_synced",
    "gauge",
    "1 once every informer finished its initial list and the caches are synced, else 0.",
)
NETWORK_PREFLIGHT = _spec(
    "network_preflight_enabled",
    "gauge",
    "1 when the agent checks that the NetworkAttachmentDefinitions a hot plug needs exist before "
    "migrating (k8s.cni.cncf.io/v1 served at start-up), 0 when the API is not served and the check is "
    "skipped.",
)
MIGRATION_WINDOW_OPEN = _spec(
    "migration_window_open",
    "gauge",
    "1 when the agent may start migrations now (inside a --migration-window, or none configured), 0 "
    "outside every window (pending hot plugs wait: outside-window).",
)
MIGRATION_WINDOW_NEXT_OPEN = _spec(
    "migration_window_next_open_timestamp_seconds",
    "gauge",
    "Unix time at which the next migration window opens while outside every window; 0 inside one or "
    "without windows.",
)
BUILD_INFO = _spec(
    "build_info",
    "gauge",
    "Always 1; labels carry the agent version and the Python version it runs on.",
    [(label, ()) for label in _BUILD_INFO_LABELS],
)

#: Every family, in documentation order.
SERIES: Final[tuple[SeriesSpec, ...]] = (
    MIGRATION_PHASE_DURATION,
    MIGRATION_DURATION,
    HOTPLUG_LATENCY,
    MIGRATIONS,
    MIGRATION_FAILURES,
    MIGRATION_RETRIES,
    MIGRATION_CREATES,
    MIGRATIONS_IN_FLIGHT,
    MIGRATION_LIMIT,
    HOTPLUGS_COMPLETED,
    PENDING_HOTPLUGS,
    OLDEST_PENDING_HOTPLUG,
    BLOCKED_VMS,
    SLOT_EXHAUSTION,
    SLOT_EXHAUSTED_VMS,
    RATE_LIMITED_DISPATCHES,
    LEADER,
    MODE,
    WATCH_RESTARTS,
    API_ERRORS,
    API_REQUESTS,
    API_REQUEST_DURATION,
    QUEUE_WAIT,
    REACTION,
    INVALID_OBJECTS,
    CACHE_SYNCED,
    NETWORK_PREFLIGHT,
    MIGRATION_WINDOW_OPEN,
    MIGRATION_WINDOW_NEXT_OPEN,
    BUILD_INFO,
)


def _runtime(name: str, kind: str, help_: str, labels: Sequence[str] = ()) -> SeriesSpec:
    return SeriesSpec(name, kind, help_, tuple((label, ()) for label in labels), preinitialise=False)


#: The families of prometheus_client's ProcessCollector (Linux: read from /proc) and GCCollector, on
#: every agent registry under their standard, unprefixed names (the ones dashboards and the Prometheus
#: ecosystem expect). Help texts are the collectors' own.
RUNTIME_SERIES: Final[tuple[SeriesSpec, ...]] = (
    _runtime("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    _runtime("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    _runtime("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."),
    _runtime("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
    _runtime("process_open_fds", "gauge", "Number of open file descriptors."),
    _runtime("process_max_fds", "gauge", "Maximum number of open file descriptors."),
    _runtime("python_gc_objects_collected_total", "counter", "Objects collected during gc", ["generation"]),
    _runtime(
        "python_gc_objects_uncollectable_total",
        "counter",
        "Uncollectable objects found during GC",
        ["generation"],
    ),
    _runtime(
        "python_gc_collections_total",
        "counter",
        "Number of times this generation was collected",
        ["generation"],
    ),
)


def all_sample_names() -> frozenset[str]:
    """Every sample name a PromQL expression may legitimately reference."""
    return frozenset(name for spec in (*SERIES, *RUNTIME_SERIES) for name in spec.sample_names)


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def phase_durations(
    points: Iterable[tuple[float, str]], created: float | None = None
) -> list[tuple[str, float]]:
    """Time spent in each VMIM phase, from its ``status.phaseTransitionTimestamps`` as parsed
    ``(epoch seconds, phase)`` points (the agent parses each VMIM once, at the boundary).

    A phase P lasts from its own transition to the next recorded transition, so the terminal phase
    (Succeeded / Failed) and the phase a still-running migration is in have no duration and are not
    returned. Points are ordered by timestamp (stable): list order in an API object is not trusted.

    The interval from ``created`` (``creationTimestamp``) to the first transition is KubeVirt's
    unlabelled "Unset" phase (normally ~0 s, the controller sets Pending right away); it is **not**
    returned. Exception: if no ``Pending`` transition was recorded at all, the VMIM was pending from
    creation, so Pending is measured from ``created`` to the first recorded transition.

    Phases outside :data:`PHASES` still bound their predecessor's duration but are not returned.
    Durations are never negative (clock skew between controllers is clamped to 0).
    """
    ordered = sorted(points, key=lambda point: point[0])
    if not ordered:
        return []
    if created is not None and all(phase != "Pending" for _, phase in ordered) and created <= ordered[0][0]:
        ordered.insert(0, (created, "Pending"))
    durations: list[tuple[str, float]] = []
    for (start, phase), (end, _next_phase) in itertools.pairwise(ordered):
        if phase in PHASES:
            durations.append((phase, max(0.0, end - start)))
    return durations


def normalise_api_code(status: int | str | None) -> str:
    """Map an HTTP status (or ``None``/0 for no answer) to a bounded ``code`` label value."""
    if status is None or status in (0, "0", ""):
        return "network"
    code = str(status)
    return code if code in API_ERROR_CODES else "other"


def _agent_version() -> str:
    try:
        return metadata.version("kubevirt-hotplug-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


def _check(value: str, allowed: Sequence[str], label: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {label} {value!r}; expected one of {', '.join(allowed)}")
    return value


# --------------------------------------------------------------------------------------------------
# The metrics object the agent uses
# --------------------------------------------------------------------------------------------------


class HotplugMetrics:
    """All series of one agent instance, registered in their own registry.

    Attributes are the raw prometheus_client objects (use ``.labels(...)`` with the closed values
    above); helpers cover the operations that need more than one call or a computation.  Helpers
    reject unknown label values with ``ValueError``: an unknown value would silently create an
    un-initialised, undocumented series.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def hist(spec: SeriesSpec) -> Histogram:
            return Histogram(spec.name, spec.help, spec.label_names, registry=r, buckets=spec.buckets)

        def counter(spec: SeriesSpec) -> Counter:
            # prometheus_client appends _total itself; give it the family name.
            return Counter(spec.name.removesuffix("_total"), spec.help, spec.label_names, registry=r)

        def gauge(spec: SeriesSpec) -> Gauge:
            return Gauge(spec.name, spec.help, spec.label_names, registry=r)

        self.migration_phase_duration_seconds = hist(MIGRATION_PHASE_DURATION)
        self.migration_duration_seconds = hist(MIGRATION_DURATION)
        self.hotplug_latency_seconds = hist(HOTPLUG_LATENCY)
        self.migrations = counter(MIGRATIONS)
        self.migration_failures = counter(MIGRATION_FAILURES)
        self.migration_retries = counter(MIGRATION_RETRIES)
        self.migrations_created = counter(MIGRATION_CREATES)
        self.migrations_in_flight = gauge(MIGRATIONS_IN_FLIGHT)
        self.migration_limit = gauge(MIGRATION_LIMIT)
        self.hotplugs_completed = counter(HOTPLUGS_COMPLETED)
        self.pending_hotplugs = gauge(PENDING_HOTPLUGS)
        self.oldest_pending_hotplug_timestamp_seconds = gauge(OLDEST_PENDING_HOTPLUG)
        self.blocked_vms = gauge(BLOCKED_VMS)
        self.slot_exhaustion = counter(SLOT_EXHAUSTION)
        self.slot_exhausted_vms = gauge(SLOT_EXHAUSTED_VMS)
        self.rate_limited_dispatches = counter(RATE_LIMITED_DISPATCHES)
        self.leader = gauge(LEADER)
        self.mode = gauge(MODE)
        self.watch_restarts = counter(WATCH_RESTARTS)
        self.api_errors = counter(API_ERRORS)
        self.api_requests = counter(API_REQUESTS)
        self.api_request_duration_seconds = hist(API_REQUEST_DURATION)
        self.queue_wait_seconds = hist(QUEUE_WAIT)
        self.reaction_seconds = hist(REACTION)
        self.invalid_objects = counter(INVALID_OBJECTS)
        self.cache_synced = gauge(CACHE_SYNCED)
        self.network_preflight = gauge(NETWORK_PREFLIGHT)
        self.migration_window_open = gauge(MIGRATION_WINDOW_OPEN)
        self.migration_window_next_open = gauge(MIGRATION_WINDOW_NEXT_OPEN)
        self.build_info = gauge(BUILD_INFO)

        self._by_spec: dict[str, Histogram | Counter | Gauge] = {
            MIGRATION_PHASE_DURATION.name: self.migration_phase_duration_seconds,
            MIGRATION_DURATION.name: self.migration_duration_seconds,
            HOTPLUG_LATENCY.name: self.hotplug_latency_seconds,
            MIGRATIONS.name: self.migrations,
            MIGRATION_FAILURES.name: self.migration_failures,
            MIGRATION_RETRIES.name: self.migration_retries,
            MIGRATION_CREATES.name: self.migrations_created,
            MIGRATIONS_IN_FLIGHT.name: self.migrations_in_flight,
            MIGRATION_LIMIT.name: self.migration_limit,
            HOTPLUGS_COMPLETED.name: self.hotplugs_completed,
            PENDING_HOTPLUGS.name: self.pending_hotplugs,
            OLDEST_PENDING_HOTPLUG.name: self.oldest_pending_hotplug_timestamp_seconds,
            BLOCKED_VMS.name: self.blocked_vms,
            SLOT_EXHAUSTION.name: self.slot_exhaustion,
            SLOT_EXHAUSTED_VMS.name: self.slot_exhausted_vms,
            RATE_LIMITED_DISPATCHES.name: self.rate_limited_dispatches,
            LEADER.name: self.leader,
            MODE.name: self.mode,
            WATCH_RESTARTS.name: self.watch_restarts,
            API_ERRORS.name: self.api_errors,
            API_REQUESTS.name: self.api_requests,
            API_REQUEST_DURATION.name: self.api_request_duration_seconds,
            QUEUE_WAIT.name: self.queue_wait_seconds,
            REACTION.name: self.reaction_seconds,
            INVALID_OBJECTS.name: self.invalid_objects,
            CACHE_SYNCED.name: self.cache_synced,
            NETWORK_PREFLIGHT.name: self.network_preflight,
            MIGRATION_WINDOW_OPEN.name: self.migration_window_open,
            MIGRATION_WINDOW_NEXT_OPEN.name: self.migration_window_next_open,
            BUILD_INFO.name: self.build_info,
        }
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._observed_vmims: OrderedDict[str, None] = OrderedDict()
        self._observed_vmims_limit = 10_000
        self._preinitialise()
        self.set_window(True, None)
        self.set_build_info(version if version is not None else _agent_version())

    def _preinitialise(self) -> None:
        """Create every closed label combination at 0 so no known series is ever absent."""
        for spec in SERIES:
            if not spec.preinitialise or spec is BUILD_INFO:
                continue
            metric = self._by_spec[spec.name]
            combos: list[tuple[str, ...]] = [()]
            for _label, values in spec.labels:
                combos = [(*combo, value) for combo in combos for value in values]
            if spec.labels:
                for combo in combos:
                    metric.labels(*combo)

    # -- state -------------------------------------------------------------------------------------

    def set_build_info(self, version: str, python_version: str | None = None) -> None:
        """Publish the build info series (exactly one, value 1)."""
        self.build_info.clear()
        py = python_version if python_version is not None else platform.python_version()
        self.build_info.labels(version=version, python_version=py).set(1)

    def set_mode(self, mode: str) -> None:
        """Mark ``mode`` as the current mode (1) and every other mode 0."""
        _check(mode, MODES, "mode")
        for value in MODES:
            self.mode.labels(mode=value).set(1 if value == mode else 0)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def set_cache_synced(self, synced: bool) -> None:
        self.cache_synced.set(1 if synced else 0)

    def set_preflight(self, check: str, enabled: bool) -> None:
        """Whether a preflight check runs (``network``: the NAD API is served)."""
        _check(check, ("network",), "preflight check")
        self.network_preflight.set(1 if enabled else 0)

    def set_window(self, open_now: bool, next_open: float | None) -> None:
        """The migration window: open now, and when the next opens (``None`` when open or none)."""
        self.migration_window_open.set(1 if open_now else 0)
        self.migration_window_next_open.set(next_open if next_open is not None else 0)

    def set_limits(self, cluster: int, node: int) -> None:
        """Publish the effective concurrency caps."""
        self.migration_limit.labels(scope="cluster").set(cluster)
        self.migration_limit.labels(scope="node").set(node)

    def _set_all(self, gauge: Gauge, label: str, allowed: Sequence[str], counts: Mapping[str, int]) -> None:
        for key in counts:
            _check(key, allowed, label)
        for value in allowed:
            gauge.labels(value).set(counts.get(value, 0))

    def set_pending(self, counts: Mapping[str, int]) -> None:
        """Replace the pending-hot-plug snapshot; states missing from ``counts`` become 0."""
        self._set_all(self.pending_hotplugs, "state", PENDING_STATES, counts)

    def set_oldest_pending(self, detected_at: float | None) -> None:
        """Publish the wall-clock (Unix) detection time of the oldest unfinished, not blocked hot plug.

        ``None`` when nothing is pending (exported as 0). Drives the HotplugAgentHotplugPendingTooLong
        alert, so pass wall time (``time.time()`` at detection), not a monotonic clock.
        """
        self.oldest_pending_hotplug_timestamp_seconds.set(detected_at if detected_at is not None else 0)

    def set_blocked(self, counts: Mapping[str, int]) -> None:
        """Replace the blocked-VM snapshot; reasons missing from ``counts`` become 0."""
        self._set_all(self.blocked_vms, "reason", BLOCKED_REASONS, counts)

    def set_in_flight(self, counts: Mapping[str, int]) -> None:
        """Replace the in-flight snapshot; initiators missing from ``counts`` become 0."""
        self._set_all(self.migrations_in_flight, "initiator", INITIATORS, counts)

    def set_slot_exhausted(self, counts: Mapping[str, int]) -> None:
        """Replace the slot-exhausted-VM snapshot; kinds missing from ``counts`` become 0."""
        self._set_all(self.slot_exhausted_vms, "kind", SLOT_KINDS, counts)

    # -- events ------------------------------------------------------------------------------------

    def observe_migration(self, result: str, initiator: str, seconds: float, vmi: str | None = None) -> None:
        """Count a finished migration and record its duration (exemplar ``vmi`` = ``ns/name``)."""
        _check(result, RESULTS, "result")
        _check(initiator, INITIATORS, "initiator")
        exemplar = {"vmi": vmi} if vmi else None
        self.migrations.labels(result=result, initiator=initiator).inc()
        self.migration_duration_seconds.labels(result=result, initiator=initiator).observe(
            max(0.0, seconds), exemplar
        )

    def observe_finished_points(
        self,
        uid: str,
        phase: str,
        points: Iterable[tuple[float, str]],
        created: float | None,
        initiator: str,
        *,
        cancelled: bool = False,
        now: float | None = None,
        vmi: str | None = None,
    ) -> bool:
        """Record everything a finished VMIM tells us, once per VMIM uid; returns False for a repeat.

        ``points`` are its parsed ``status.phaseTransitionTimestamps`` (``(epoch, phase)``), ``created``
        its ``creationTimestamp``. Records the phase durations (:func:`phase_durations`) and the
        migration's result and duration (:meth:`observe_migration`, exemplar ``vmi`` = ``ns/name``).
        The result comes from ``phase`` (Succeeded / Failed), or is ``cancelled`` when
        ``cancelled=True`` (the agent deleted it past its deadline, or it vanished unfinished).
        Duration: ``created`` to the terminal phase's transition; without one (cancelled), to ``now``
        (wall-clock Unix seconds) or else to the last recorded transition.

        Why dedupe here: watch events are re-delivered after relists and restarts of a watch, and the
        agent may see the same terminal VMIM many times; counting it twice would skew every ratio.
        The memory of seen uids is bounded (oldest forgotten first). Returns False, recording
        nothing, for a VMIM that is neither terminal nor cancelled, or that has no uid.
        """
        _check(initiator, INITIATORS, "initiator")
        if cancelled:
            result = "cancelled"
        elif phase in TERMINAL_PHASES:
            result = TERMINAL_PHASES[phase]
        else:
            return False
        if not uid or uid in self._observed_vmims:
            return False
        self._observed_vmims[uid] = None
        while len(self._observed_vmims) > self._observed_vmims_limit:
            self._observed_vmims.popitem(last=False)
        self._record_finished(result, initiator, list(points), created=created, now=now, vmi=vmi)
        return True

    def _record_finished(
        self,
        result: str,
        initiator: str,
        points: list[tuple[float, str]],
        *,
        created: float | None,
        now: float | None,
        vmi: str | None,
    ) -> None:
        for phase_name, secs in phase_durations(points, created):
            self.migration_phase_duration_seconds.labels(phase=phase_name, initiator=initiator).observe(secs)
        stamps = {p: t for t, p in points}
        end: float | None = next((stamps[p] for p in TERMINAL_PHASES if p in stamps), None)
        if end is None:
            end = now if now is not None else max(stamps.values(), default=None)
        seconds = max(0.0, end - created) if created is not None and end is not None else 0.0
        self.observe_migration(result, initiator, seconds, vmi=vmi)

    def observe_hotplug_completed(self, operation: str, seconds: float, vmi: str | None = None) -> None:
        """Count a verified hot plug/unplug and record detection→verified latency."""
        _check(operation, OPERATIONS, "operation")
        exemplar = {"vmi": vmi} if vmi else None
        self.hotplugs_completed.labels(operation=operation).inc()
        self.hotplug_latency_seconds.labels(operation=operation).observe(max(0.0, seconds), exemplar)

    def record_failure(self, reason: str) -> None:
        self.migration_failures.labels(reason=_check(reason, FAILURE_REASONS, "reason")).inc()

    def record_retry(self) -> None:
        self.migration_retries.inc()

    def record_migration_created(self) -> None:
        self.migrations_created.inc()

    def record_slot_exhaustion(self, kind: str) -> None:
        self.slot_exhaustion.labels(kind=_check(kind, SLOT_KINDS, "kind")).inc()

    def record_rate_limited(self, limit: str) -> None:
        self.rate_limited_dispatches.labels(limit=_check(limit, RATE_LIMITS, "limit")).inc()

    def record_watch_restart(self, resource: str, reason: str) -> None:
        _check(resource, RESOURCES, "resource")
        _check(reason, WATCH_RESTART_REASONS, "reason")
        self.watch_restarts.labels(resource=resource, reason=reason).inc()

    def record_api_error(self, verb: str, status: int | str | None) -> None:
        """Count a failed API request; ``status`` is normalised by :func:`normalise_api_code`."""
        _check(verb, API_VERBS, "verb")
        self.api_errors.labels(verb=verb, code=normalise_api_code(status)).inc()

    def observe_api_request(self, verb: str, resource: str, status: int, seconds: float) -> None:
        """Count one API request attempt and record its latency (``status`` 0: no answer).

        ``resource`` outside :data:`API_RESOURCES` is counted as ``other`` and an unknown code as
        ``other``: this runs inside the API client, where a new call must never break on a label.
        """
        _check(verb, API_VERBS, "verb")
        resource_label = resource if resource in API_RESOURCES else "other"
        code = str(status) if str(status) in API_CODES else normalise_api_code(status)
        self.api_requests.labels(verb=verb, resource=resource_label, code=code).inc()
        self.api_request_duration_seconds.labels(verb=verb).observe(max(0.0, seconds))

    def observe_reaction(self, seconds: float) -> None:
        """Record one reaction: the ready-making watch event → the create request sent (seconds)."""
        self.reaction_seconds.observe(max(0.0, seconds))

    def observe_queue_wait(self, seconds: float, vmi: str | None = None) -> None:
        """Record how long a hot plug ready to migrate waited until its VMIM was created.

        Call once per created migration, with the time from the moment it became ready (nothing left
        to wait for but a slot or a token) to the successful create (exemplar ``vmi`` = ``ns/name``).
        """
        exemplar = {"vmi": vmi} if vmi else None
        self.queue_wait_seconds.observe(max(0.0, seconds), exemplar)

    def record_invalid_object(self, resource: str) -> None:
        self.invalid_objects.labels(resource=_check(resource, RESOURCES, "resource")).inc()
