"""Every Redis key and channel name kubetask uses, in one place."""

PREFIX = "kubetask"
JOBS_INDEX = f"{PREFIX}:jobs"
PROGRESS_PATTERN = f"{PREFIX}:progress:*"
OUTBOX = f"{PREFIX}:outbox"  # sorted set: notification ids scored by when they are due
OUTBOX_ENTRIES = f"{PREFIX}:outbox:entries"  # hash: notification id -> entry (JSON)
OUTBOX_DEAD = f"{PREFIX}:outbox:dead"  # list: entries that ran out of attempts (JSON)
WAKEUP = f"{PREFIX}:wakeup"  # pub/sub: ids of jobs a follower replica took, for the leader
JOB_COUNTS = f"{PREFIX}:counts"  # hash: unfinished jobs by "jobs|state|kind", "queue|name"
EXPIRING = f"{PREFIX}:expiring"  # sorted set: finished job ids scored by when they expire
STORE_SCHEMA = f"{PREFIX}:store:schema"  # the store's index layout, once every record has it


def progress_channel(job_id: str) -> str:
    """Pub/sub channel carrying a job's progress and state events."""
    return f"{PREFIX}:progress:{job_id}"


def job_id_from_channel(channel: str) -> str:
    return channel.removeprefix(f"{PREFIX}:progress:")


def history(job_id: str) -> str:
    """Sorted set of a job's recent events, scored by seq."""
    return f"{PREFIX}:history:{job_id}"


def latest_progress(job_id: str) -> str:
    return f"{PREFIX}:latest:{job_id}"


def progress_tally(job_id: str) -> str:
    """Hash: the job's progress figure (attempt, fraction, base, since; kubetask.eventlog)."""
    return f"{PREFIX}:progress-tally:{job_id}"


def progress_workers(job_id: str) -> str:
    """Hash: each worker's run, fraction and stage (`run:<index>`, `fraction:<index>`, ...)."""
    return f"{PREFIX}:progress-workers:{job_id}"


def seq(job_id: str) -> str:
    return f"{PREFIX}:seq:{job_id}"


OUTCOMES = f"{PREFIX}:outcome:"  # then `<job id>:<completion index>`


def outcome(job_id: str, index: int = 0) -> str:
    """A task's outcome (result or error) for one completion index."""
    return f"{OUTCOMES}{job_id}:{index}"


def job(job_id: str) -> str:
    """Hash holding one job record."""
    return f"{PREFIX}:job:{job_id}"


def idempotency(tenant: str, key: str) -> str:
    """An Idempotency-Key, scoped to its tenant: two tenants may pick the same key."""
    return f"{PREFIX}:idempotency:{tenant}:{key}"


def tenant_jobs(tenant: str) -> str:
    """A tenant's jobs: the same lexically sorted index as JOBS_INDEX, for its listing."""
    return f"{PREFIX}:tenant:{tenant}:jobs"


def state_jobs(tenant: str | None, state: str) -> str:
    """Index of the jobs in one state (every tenant's when `tenant` is None)."""
    return (
        f"{PREFIX}:state:{state}:jobs"
        if tenant is None
        else f"{PREFIX}:tenant:{tenant}:state:{state}:jobs"
    )


def kind_jobs(tenant: str | None, kind: str) -> str:
    """Index of the jobs of one kind (every tenant's when `tenant` is None)."""
    return (
        f"{PREFIX}:kind:{kind}:jobs"
        if tenant is None
        else f"{PREFIX}:tenant:{tenant}:kind:{kind}:jobs"
    )


def label_jobs(tenant: str | None, key: str, value: str) -> str:
    """Index of the jobs carrying one label (every tenant's when `tenant` is None)."""
    label = f"label:{key}={value}"
    return f"{PREFIX}:{label}:jobs" if tenant is None else f"{PREFIX}:tenant:{tenant}:{label}:jobs"


def tenant_active(tenant: str) -> str:
    """Set of a tenant's unfinished (queued, pending, running) job ids, for its cap."""
    return f"{PREFIX}:tenant:{tenant}:active"


def tenant_submits(tenant: str, window: int) -> str:
    """Counter of a tenant's submissions in one fixed one-minute window (expires with it)."""
    return f"{PREFIX}:tenant:{tenant}:submits:{window}"


def tenant_streams(tenant: str) -> str:
    """Sorted set of a tenant's open event streams (SSE, WebSocket), scored by lease end."""
    return f"{PREFIX}:tenant:{tenant}:streams"


# What a job's tasks keep in Redis together, as templates of the job id: an `hpo`/`nas`
# study (its Optuna journal, its writers' last tokens, its trial tickets) and
# `explain-batch`'s claims. They go with the job's record (expiry, purge).
STUDY_JOURNAL = f"{PREFIX}:optuna:%s:journal"  # list: the study's whole history, one log each
STUDY_WRITERS = f"{PREFIX}:optuna:%s:writers"  # hash: each writer's last token (see study.py)
STUDY_TICKETS = f"{PREFIX}:optuna:%s:tickets"  # counter: trials taken across the workers
SHARES_CLAIMED = f"{PREFIX}:shares:%s:claimed"  # hash: item position -> the index claiming it
SHARES_DONE = f"{PREFIX}:shares:%s:done"  # set: positions finished by any worker
# A study an earlier version began is in Optuna's own layout (`JournalRedisBackend`'s, under
# the prefix `kubetask:optuna:<id>`): a counter, a key per log (`...:log:<n>`), a snapshot.
STUDY_LOG_NUMBER = f"{PREFIX}:optuna:%s:log_number"
STUDY_LOG = f"{PREFIX}:optuna:%s:log:"  # then the log's number
STUDY_SNAPSHOT = f"{PREFIX}:optuna:%s:snapshot"
TASK_SHARED = (
    *(STUDY_JOURNAL, STUDY_WRITERS, STUDY_TICKETS, SHARES_CLAIMED, SHARES_DONE),
    *(STUDY_LOG_NUMBER, STUDY_SNAPSHOT),
)


def task_shared(job_id: str) -> list[str]:
    """Every key a job's tasks may share in Redis."""
    return [template % job_id for template in TASK_SHARED]


def study_journal(job_id: str) -> str:
    return STUDY_JOURNAL % job_id


def study_writers(job_id: str) -> str:
    return STUDY_WRITERS % job_id


def study_tickets(job_id: str) -> str:
    return STUDY_TICKETS % job_id


def study_log_number(job_id: str) -> str:
    return STUDY_LOG_NUMBER % job_id


def study_log_prefix(job_id: str) -> str:
    """Log n of a study in Optuna's layout is this followed by n."""
    return STUDY_LOG % job_id


def shares_claimed(job_id: str) -> str:
    return SHARES_CLAIMED % job_id


def shares_done(job_id: str) -> str:
    return SHARES_DONE % job_id
