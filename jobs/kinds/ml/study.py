"""Where an `hpo`/`nas` study lives in Redis, shared by every worker of the job: its Optuna
journal (`RedisJournal`: the study's whole history, one Redis list, so its keys are few and
known by name) and its trial budget (`RedisBudget`). Both go through the task's patient
client (jobs/patient_redis.py): Redis away, a worker waits for it, and a write whose answer
was lost is sent again. Each write carries a token, which the scripts keep per writer, so a
write sent again is made once: a log appended twice would replay as two operations, a
ticket taken twice would leave a trial unrun.

A study begun by an earlier version is in Optuna's own layout (`<prefix>:log_number` and a
key per log, `JournalRedisBackend`'s): `journal_for` goes on in that one
(`OptunaLayoutJournal`, the same keys and the same atomic append, so a worker of the
earlier version still running beside this one's shares the study)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import redis
from optuna.storages.journal import BaseJournalBackend

from kubetask import keys
from kubetask.jobs.patient_redis import patient_client

# KEYS: the journal, the writers. ARGV: the writer, this write's token, then the logs.
_APPEND = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 0 end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return #ARGV - 2
"""

# KEYS: the tickets, the writers. ARGV: the writer, this take's token. The ticket's number.
_TAKE = """
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last then
  local token, number = string.match(last, '^(.-):(%d+)$')
  if token == ARGV[2] then return tonumber(number) end
end
local number = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. number)
return number
"""


# KEYS: the log counter, the writers; ARGV: the log key prefix, the writer, its token, then
# the logs. Optuna's `JournalRedisBackend` append (the counter starts at -1), told a repeat.
_APPEND_OPTUNA_LAYOUT = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return 0 end
redis.call('SETNX', KEYS[1], -1)
for i = 4, #ARGV do
  local number = redis.call('INCR', KEYS[1])
  redis.call('SET', ARGV[1] .. number, ARGV[i])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return #ARGV - 3
"""
READ_BATCH = 500  # logs read per round trip in Optuna's layout


def writer_id(index: int) -> str:
    """One task process among the job's writers: its completion index and a random part (a
    retried worker of the same index is another writer)."""
    return f"{index}-{secrets.token_hex(6)}"


class RedisJournal(BaseJournalBackend):
    """Optuna's journal as one Redis list: log n is element n."""

    def __init__(self, client: redis.Redis, *, job_id: str, writer: str) -> None:
        self._client = client
        self._journal = keys.study_journal(job_id)
        self._writers = keys.study_writers(job_id)
        self._writer = f"journal:{writer}"
        self._append = client.register_script(_APPEND)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        for raw in self._client.lrange(self._journal, log_number_from, -1):
            yield json.loads(raw)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        token = secrets.token_hex(8)
        texts = [json.dumps(entry) for entry in logs]
        self._append(keys=[self._journal, self._writers], args=[self._writer, token, *texts])


class OptunaLayoutJournal(BaseJournalBackend):
    """A study an earlier version began, in Optuna's `JournalRedisBackend` layout: log n at
    `<prefix>:log:n`, the last number at `<prefix>:log_number`."""

    def __init__(self, client: redis.Redis, *, job_id: str, writer: str) -> None:
        self._client = client
        self._counter = keys.study_log_number(job_id)
        self._logs = keys.study_log_prefix(job_id)
        self._writers = keys.study_writers(job_id)
        self._writer = f"journal:{writer}"
        self._append = client.register_script(_APPEND_OPTUNA_LAYOUT)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        last = self._client.get(self._counter)
        numbers = range(log_number_from, int(last) + 1 if last is not None else 0)
        for start in range(0, len(numbers), READ_BATCH):
            batch = numbers[start : start + READ_BATCH]
            for raw in self._client.mget([f"{self._logs}{n}" for n in batch]):
                if raw is None:  # (never: each log is written with its number)
                    return
                yield json.loads(raw)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        token = secrets.token_hex(8)
        texts = [json.dumps(entry) for entry in logs]
        self._append(
            keys=[self._counter, self._writers], args=[self._logs, self._writer, token, *texts]
        )


def journal_for(client: redis.Redis, *, job_id: str, writer: str) -> BaseJournalBackend:
    """The study's journal: in Optuna's layout when an earlier version began it there."""
    if client.exists(keys.study_log_number(job_id)):
        return OptunaLayoutJournal(client, job_id=job_id, writer=writer)
    return RedisJournal(client, job_id=job_id, writer=writer)


class RedisBudget:
    """Tickets counted in Redis, shared by every worker of the job (and its retries)."""

    def __init__(self, url: str, *, job_id: str, writer: str, total: int) -> None:
        self._client = patient_client(url)
        self._keys = [keys.study_tickets(job_id), keys.study_writers(job_id)]
        self._writer = f"tickets:{writer}"
        self._total = total
        self._take = self._client.register_script(_TAKE)

    def take(self) -> bool:
        number = self._take(keys=self._keys, args=[self._writer, secrets.token_hex(8)])
        return int(number) <= self._total

    def close(self) -> None:
        self._client.close()


def expire_study(url: str, job_id: str, ttl_s: int) -> int:
    """Give every key of the job's study a time to live, as the job's own records have (a
    later worker of the same job sets it again); how many keys there were."""
    names = [keys.study_journal(job_id), keys.study_writers(job_id), keys.study_tickets(job_id)]
    with patient_client(url) as client:
        last = client.get(keys.study_log_number(job_id))  # a study in Optuna's layout
        if last is not None:
            logs = keys.study_log_prefix(job_id)
            names += [keys.study_log_number(job_id), *(f"{logs}{n}" for n in range(int(last) + 1))]
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.expire(name, ttl_s)
            return sum(bool(done) for done in pipe.execute())
