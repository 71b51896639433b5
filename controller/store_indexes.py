"""Which index entries and counts a job record holds (pure): the store's scripts write
them beside the record, keep the lists in the record's hash (`indexes`, `state_indexes`,
`counted`) and remove exactly those entries when the record goes (expiry, a failed fsync).

- every job: the job index and its tenant's; its kind's (global and the tenant's); one per
  label (global and the tenant's); its state's (global and the tenant's), moved on each
  state change;
- unfinished jobs: counted in `keys.JOB_COUNTS` by `jobs|state|kind` and, while queued, by
  `queue|name`, so a metrics scrape reads one small hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubetask import keys
from kubetask.controller.records import JobRecord
from kubetask.models import JobState

Tenant = str | None


def static_indexes(record: JobRecord) -> list[str]:
    """The indexes a job stays in for its whole life, for every tenant's listing and its own."""
    request = record.request
    found: list[str] = [keys.JOBS_INDEX, keys.tenant_jobs(record.tenant)]
    for tenant in (None, record.tenant):
        found.append(keys.kind_jobs(tenant, request.kind))
        found += [keys.label_jobs(tenant, k, v) for k, v in sorted(request.labels.items())]
    return found


def state_indexes(record: JobRecord, state: JobState) -> list[str]:
    return [keys.state_jobs(None, state.value), keys.state_jobs(record.tenant, state.value)]


def counted(record: JobRecord, state: JobState) -> list[str]:
    """The count fields a job in `state` adds one to (none once it is finished)."""
    if state.terminal:
        return []
    fields = [f"jobs|{state.value}|{record.request.kind}"]
    if state is JobState.QUEUED:
        fields.append(f"queue|{record.request.queue or ''}")
    return fields


def as_json(names: Sequence[str]) -> str:
    return json.dumps(list(names))


@dataclass(frozen=True)
class Counts:
    """Unfinished jobs by (state, kind), and waiting (queued) jobs by queue."""

    jobs: dict[tuple[str, str], int]
    queued: dict[str, int]


def parse_counts(raw: Mapping[str, str]) -> Counts:
    jobs: dict[tuple[str, str], int] = {}
    queued: dict[str, int] = {}
    for name, value in raw.items():
        what, _, rest = name.partition("|")
        if what == "jobs":
            state, _, kind = rest.partition("|")
            jobs[(state, kind)] = int(value)
        elif what == "queue":
            queued[rest] = int(value)
    return Counts(jobs=jobs, queued=queued)


def narrowest(
    tenant: Tenant, state: JobState | None, kind: str | None, labels: Mapping[str, str]
) -> list[str]:
    """The indexes that hold every match of a query: the listing walks the smallest."""
    found = [keys.JOBS_INDEX if tenant is None else keys.tenant_jobs(tenant)]
    if state is not None:
        found.append(keys.state_jobs(tenant, state.value))
    if kind is not None:
        found.append(keys.kind_jobs(tenant, kind))
    found += [keys.label_jobs(tenant, k, v) for k, v in sorted(labels.items())]
    return found
