"""Every Redis key and channel name kubetask uses, in one place."""

PREFIX = "kubetask"
JOBS_INDEX = f"{PREFIX}:jobs"
PROGRESS_PATTERN = f"{PREFIX}:progress:*"
OUTBOX = f"{PREFIX}:outbox"  # sorted set: notification ids scored by when they are due
OUTBOX_ENTRIES = f"{PREFIX}:outbox:entries"  # hash: notification id -> entry (JSON)
OUTBOX_DEAD = f"{PREFIX}:outbox:dead"  # list: entries that ran out of attempts (JSON)


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


def seq(job_id: str) -> str:
    return f"{PREFIX}:seq:{job_id}"


def outcome(job_id: str, index: int = 0) -> str:
    """A task's outcome (result or error) for one completion index."""
    return f"{PREFIX}:outcome:{job_id}:{index}"


def job(job_id: str) -> str:
    """Hash holding one job record."""
    return f"{PREFIX}:job:{job_id}"


def idempotency(key: str) -> str:
    return f"{PREFIX}:idempotency:{key}"


def optuna_journal(job_id: str) -> str:
    """The key prefix of an `hpo` job's Optuna journal (its study's whole history)."""
    return f"{PREFIX}:optuna:{job_id}"


def optuna_tickets(job_id: str) -> str:
    """An `hpo` job's trial budget, taken one INCR per trial across its workers."""
    return f"{PREFIX}:optuna:{job_id}:tickets"
