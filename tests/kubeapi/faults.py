"""Injectable faults and the request log.

A `FaultRule` answers matching requests with an error status instead of serving them: for the
next `times` matches, or for a fraction `rate` of them (drawn from a seeded RNG), or both.
Rules match on verb (`create`, `get`, `list`, `watch`, `update`, `patch`, `delete`,
`deletecollection`), resource (`jobs`, or `jobs/status` for a subresource), namespace and name;
None matches anything."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from tests.kubeapi.errors import ApiError, error_for_code


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered: `at` is when its response started
    (`time.monotonic()`); `name` is the object's, for a create the name in its body."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    verb: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    content_type: str = ""
    user_agent: str = ""
    retry_after: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class FaultRule:
    status: int
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    times: int | None = 1  # None: no limit
    rate: float = 1.0
    retry_after_s: int | None = None
    hits: int = field(default=0)

    def matches(self, verb: str, resource: str, namespace: str, name: str) -> bool:
        wanted = (
            (self.verb, verb),
            (self.resource, resource),
            (self.namespace, namespace),
            (self.name, name),
        )
        return all(rule is None or rule == actual for rule, actual in wanted)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    """The server's fault rules; thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)

    def fail_next(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        status: int = 500,
        retry_after_s: int | None = None,
        times: int | None = 1,
        rate: float = 1.0,
        namespace: str | None = None,
        name: str | None = None,
    ) -> FaultRule:
        """Fail matching requests with `status` (429 carries `Retry-After: retry_after_s`,
        default 1): the next `times` of them (None: every one), each with probability `rate`."""
        rule = FaultRule(status, verb, resource, namespace, name, times, rate, retry_after_s)
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail_rate(
        self,
        rate: float,
        *,
        status: int = 503,
        verb: str | None = None,
        resource: str | None = None,
        retry_after_s: int | None = None,
    ) -> FaultRule:
        """Fail a fraction of the matching requests, indefinitely."""
        return self.fail_next(
            verb=verb,
            resource=resource,
            status=status,
            rate=rate,
            times=None,
            retry_after_s=retry_after_s,
        )

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def check(self, verb: str, resource: str, namespace: str, name: str) -> None:
        """Raise the error of the first rule that fires for this request, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.spent or not rule.matches(verb, resource, namespace, name):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.hits += 1
                error: ApiError = error_for_code(rule.status, rule.retry_after_s)
                raise error
            self._rules = [r for r in self._rules if not r.spent]
