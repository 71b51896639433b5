"""Where an `hpo`/`nas` study lives in Redis (jobs/kinds/ml/study.py), against a real Redis:
its keys are few and named (they expire by name, no SCAN); a write sent again after its
answer was lost is made once; and the workers wait for a Redis that is restarting rather
than fail (the embedded one goes down with its controller)."""

from __future__ import annotations

import threading
import time
import warnings

import optuna
import redis
from optuna.storages.journal import JournalRedisBackend, JournalStorage

from kubetask import keys
from kubetask.controller.redis_server import RedisServer
from kubetask.jobs.kinds.ml.study import (
    _APPEND,
    _TAKE,
    OptunaLayoutJournal,
    RedisBudget,
    RedisJournal,
    expire_study,
    journal_for,
    writer_id,
)
from kubetask.jobs.patient_redis import patient_client

JOB_ID = "study-store-0001"
TTL_S = 600


def scans(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def study_on(url: str, job_id: str) -> optuna.Study:
    journal = RedisJournal(patient_client(url), job_id=job_id, writer=writer_id(0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=f"kubetask-{job_id}", storage=JournalStorage(journal), load_if_exists=True
    )


def test_every_key_of_the_study_is_named_and_expires_by_name(redis_url: str) -> None:
    study_on(redis_url, JOB_ID).optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    RedisBudget(redis_url, job_id=JOB_ID, writer=writer_id(0), total=3).take()
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{keys.PREFIX}:optuna:{JOB_ID}-other:x", 1)  # another job's, by prefix
        before = scans(client)
        assert expire_study(redis_url, JOB_ID, TTL_S) == 3  # the journal, writers, tickets
        assert scans(client) == before
        written = sorted(client.scan_iter(match=f"{keys.PREFIX}:optuna:{JOB_ID}:*"))
        named = (keys.study_journal(JOB_ID), keys.study_writers(JOB_ID), keys.study_tickets(JOB_ID))
        assert written == sorted(name.encode() for name in named)
        assert all(0 < client.ttl(key) <= TTL_S for key in written)
        assert client.ttl(f"{keys.PREFIX}:optuna:{JOB_ID}-other:x") == -1
    assert len(study_on(redis_url, JOB_ID).trials) == 3  # read back whole


def test_a_write_sent_again_with_its_token_is_made_once(redis_url: str) -> None:
    job_id = "study-store-0002"
    names = [keys.study_journal(job_id), keys.study_writers(job_id)]
    with redis.Redis.from_url(redis_url) as client:
        append = client.register_script(_APPEND)
        assert append(keys=names, args=["journal:w", "t1", "a", "b"]) == 2
        assert append(keys=names, args=["journal:w", "t1", "a", "b"]) == 0  # the answer lost
        assert append(keys=names, args=["journal:w", "t2", "c"]) == 1
        assert client.lrange(names[0], 0, -1) == [b"a", b"b", b"c"]
        take = client.register_script(_TAKE)
        tickets = [keys.study_tickets(job_id), names[1]]
        assert take(keys=tickets, args=["tickets:w", "t1"]) == 1
        assert take(keys=tickets, args=["tickets:w", "t1"]) == 1  # the same ticket again
        assert take(keys=tickets, args=["tickets:v", "t1"]) == 2  # another writer's
        assert take(keys=tickets, args=["tickets:w", "t3"]) == 3


def test_workers_wait_for_a_restarting_redis_and_run_every_trial_once(
    own_redis: RedisServer,
) -> None:
    url, total = own_redis.url, 12
    study = study_on(url, JOB_ID)
    budgets = [RedisBudget(url, job_id=JOB_ID, writer=writer_id(i), total=total) for i in (0, 1)]
    studies = [study, study_on(url, JOB_ID)]
    errors: list[BaseException] = []

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.1)  # the trials go on while Redis is away
        return trial.suggest_float("x", 0, 1)

    def work(index: int) -> None:
        try:
            while budgets[index].take():
                studies[index].optimize(objective, n_trials=1)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for worker in workers:
        worker.start()
    time.sleep(0.3)
    own_redis.kill()  # as the embedded one dies with a SIGKILLed controller
    time.sleep(1.5)
    own_redis.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    trials = study_on(url, JOB_ID).trials
    assert len(trials) == total
    assert [t.number for t in trials] == list(range(total))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_study_an_earlier_version_began_goes_on_in_its_layout(redis_url: str) -> None:
    """Begun by Optuna's own `JournalRedisBackend` (the earlier version's), its trials are
    read and the next ones written in that layout, so a worker of either version sees all;
    its keys are named for expiry too."""
    job_id = "study-store-0003"
    objective = lambda trial: trial.suggest_float("x", 0, 1)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        earlier = JournalRedisBackend(redis_url, prefix=f"{keys.PREFIX}:optuna:{job_id}")
    name = f"kubetask-{job_id}"
    optuna.create_study(study_name=name, storage=JournalStorage(earlier)).optimize(
        objective, n_trials=3
    )
    journal = journal_for(patient_client(redis_url), job_id=job_id, writer=writer_id(1))
    assert isinstance(journal, OptunaLayoutJournal)
    study = optuna.load_study(study_name=name, storage=JournalStorage(journal))
    assert len(study.trials) == 3
    study.optimize(objective, n_trials=2)
    by_the_earlier = optuna.load_study(study_name=name, storage=JournalStorage(earlier))
    assert [t.number for t in by_the_earlier.trials] == [0, 1, 2, 3, 4]
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(keys.study_journal(job_id))
        logs = int(client.get(keys.study_log_number(job_id)) or -1) + 1
        assert expire_study(redis_url, job_id, TTL_S) == 1 + logs + 1  # writers, logs, counter
