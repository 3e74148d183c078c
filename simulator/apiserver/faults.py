"""Fault injection: error rates, latency, watch drops and forced 410s, all seeded and switchable at runtime.

Tests reach it in-process (`server.faults`) or over HTTP under `/sim/faults` (see `admin.py`), so a
test driving a separately started agent can still break the API on purpose.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.apiserver.errors import ApiError
from simulator.apiserver.watch import Close

if TYPE_CHECKING:
    from simulator.apiserver.store import Store

_MESSAGES: dict[int, tuple[str, str]] = {
    429: ("TooManyRequests", "Too many requests, please try again later. (injected fault)"),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request (injected fault)"),
}


@dataclass
class FaultRule:
    """One rule; empty `verbs`/`resources` match every verb/resource (plural names)."""

    verbs: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    #: Probability that a matching request fails with one of `error_codes` (chosen at random).
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500,)
    #: Seconds announced in `Retry-After` (and Status details) for 429s.
    retry_after: int = 1
    #: Added delay before a matching request is handled: latency + uniform(0, jitter).
    latency: float = 0.0
    jitter: float = 0.0
    #: Per-second probability that each open matching watch is dropped.
    watch_drop_rate: float = 0.0
    #: "abort" resets the connection; "eof" ends the chunked body cleanly.
    drop_mode: str = "abort"
    #: Errors this rule may still inject (None = unlimited); the rule stays for latency/drops.
    remaining: int | None = None
    id: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {f for f in cls.__dataclass_fields__ if f != "id"}
        unknown = set(data) - allowed
        if unknown:
            raise ApiError(400, f"unknown fault rule fields: {sorted(unknown)}")
        kw = dict(data)
        for f in ("verbs", "resources", "error_codes"):
            if f in kw:
                kw[f] = tuple(kw[f])
        rule = cls(**kw)
        for code in rule.error_codes:
            if code not in _MESSAGES:
                raise ApiError(400, f"unsupported injected error code {code} (use 429, 500, 503)")
        if rule.drop_mode not in ("abort", "eof"):
            raise ApiError(400, "drop_mode must be 'abort' or 'eof'")
        return rule

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, verb: str, resource: str) -> bool:
        return (not self.verbs or verb in self.verbs) and (not self.resources or resource in self.resources)


@dataclass
class _Expiry:
    resource: str | None
    remaining: int | None  # None = every watch from an RV


@dataclass
class Faults:
    """The active fault rules and one-shot fault actions."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    rules: list[FaultRule] = field(default_factory=list)
    _store: Store | None = None
    _next_id: int = 1
    _expiries: list[_Expiry] = field(default_factory=list)
    injected: int = 0

    def add(self, rule: FaultRule) -> int:
        rule.id = self._next_id
        self._next_id += 1
        self.rules.append(rule)
        return rule.id

    def remove(self, rule_id: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Remove every rule and pending forced expiry."""
        self.rules.clear()
        self._expiries.clear()

    # -- request faults

    def delay_for(self, verb: str, resource: str) -> float:
        total = 0.0
        for r in self.rules:
            if r.matches(verb, resource) and (r.latency or r.jitter):
                total += r.latency + (self.rng.uniform(0, r.jitter) if r.jitter else 0.0)
        return total

    def error_for(self, verb: str, resource: str) -> ApiError | None:
        for r in self.rules:
            if not r.matches(verb, resource) or r.error_rate <= 0 or r.remaining == 0:
                continue
            if self.rng.random() < r.error_rate:
                if r.remaining is not None:
                    r.remaining -= 1
                code = self.rng.choice(r.error_codes)
                reason, message = _MESSAGES[code]
                self.injected += 1
                if code == 429:
                    return ApiError(
                        429,
                        message,
                        reason,
                        {"retryAfterSeconds": r.retry_after},
                        {"Retry-After": str(r.retry_after)},
                    )
                return ApiError(code, message, reason)
        return None

    # -- watch faults

    def force_expired(self, resource: str | None = None, count: int | None = 1) -> None:
        """The next `count` watches from an RV (None: all of them until cleared) get 410 Expired."""
        self._expiries.append(_Expiry(resource, count))

    def take_expiry(self, resource: str) -> bool:
        for e in self._expiries:
            if e.resource in (None, resource) and e.remaining != 0:
                if e.remaining is not None:
                    e.remaining -= 1
                self._expiries = [x for x in self._expiries if x.remaining != 0]
                return True
        return False

    def drop_watches(self, resource: str | None = None, mode: str = "abort") -> int:
        """Close open watches now (all, or those on one plural); returns how many."""
        if self._store is None:
            return 0
        how = Close.ABORT if mode == "abort" else Close.EOF
        n = 0
        for w in self._store.watchers():
            if resource is None or w.rtype.plural == resource:
                w.close(how)
                n += 1
        return n

    def tick(self, dt: float) -> None:
        """Apply per-second watch drop rates over an elapsed `dt` (called by the server's ticker)."""
        if self._store is None:
            return
        for r in self.rules:
            if r.watch_drop_rate <= 0:
                continue
            how = Close.ABORT if r.drop_mode == "abort" else Close.EOF
            for w in self._store.watchers():
                if r.matches("watch", w.rtype.plural) and self.rng.random() < r.watch_drop_rate * dt:
                    w.close(how)
