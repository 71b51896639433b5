"""An `hpo`/`nas` study's keys get their time to live by name: every key Optuna's journal
wrote (and the trial tickets) expires, nothing else does, and no SCAN walks the keyspace."""

from __future__ import annotations

import warnings

import optuna
import redis

from kubetask.jobs.kinds.ml.search import (
    RedisBudget,
    expire_study,
    journal_prefix,
    tickets_key,
)

JOB_ID = "study-expiry-0001"
TTL_S = 600


def scans(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def test_every_key_of_the_study_expires_and_nothing_is_scanned(redis_url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = optuna.storages.journal.JournalRedisBackend(
            redis_url, prefix=journal_prefix(JOB_ID)
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"kubetask-{JOB_ID}", storage=optuna.storages.journal.JournalStorage(backend)
    )
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    backend.save_snapshot(b"snapshot")
    RedisBudget(redis_url, key=tickets_key(JOB_ID), total=3).take()
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{journal_prefix(JOB_ID)}-other:x", 1)  # another job's, by prefix alone
        before = scans(client)
        count = expire_study(redis_url, JOB_ID, TTL_S)
        assert scans(client) == before
        written = list(client.scan_iter(match=f"{journal_prefix(JOB_ID)}:*"))
        assert count == len(written) > 5  # log_number, snapshot, tickets and the logs
        assert all(0 < client.ttl(key) <= TTL_S for key in written)
        assert client.ttl(f"{journal_prefix(JOB_ID)}-other:x") == -1


def test_a_study_without_a_journal_has_only_its_tickets(redis_url: str) -> None:
    RedisBudget(redis_url, key=tickets_key("study-expiry-0002"), total=1).take()
    assert expire_study(redis_url, "study-expiry-0002", TTL_S) == 1
