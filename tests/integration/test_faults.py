"""Fault tolerance of the kubernetes backend: the controller (the real API process) SIGKILLed
at random points, its connections cut and etcd compacted, the API server's own 429s with
Retry-After (API Priority and Fairness), Redis restarted — against the real control plane
(the API server's audit log is the witness: every Job creation, every 429 and when the next
call came) and a real Redis. Each test prints its figures. Two replicas and leader
election: test_faults_replicas.py."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kubetask.controller.redis_server import RedisServer
from tests.cluster.audit import AuditRecord
from tests.cluster.bootstrap import throttle
from tests.cluster.control_plane import ControlPlane
from tests.conftest import KubeStack, kubernetes_stack
from tests.servers import TERMINAL, ApiServer


def job_creations(stack: KubeStack) -> Counter[str]:
    """Job name -> how many times the server created it, over the whole run: each 201, and a
    504 (the API server gave up waiting on etcd, whose write may still land) when a later
    create of that name met the Job already there (409) and no create got a 201."""
    answers: dict[str, list[int]] = {}
    for r in stack.controller_requests():
        if (r.verb, r.resource) == ("create", "jobs"):
            answers.setdefault(r.name, []).append(r.code)
    created: Counter[str] = Counter()
    for name, codes in answers.items():
        landed_late = 201 not in codes and 504 in codes and 409 in codes[codes.index(504) :]
        if created_n := codes.count(201) + landed_late:
            created[name] = created_n
    return created


def assert_one_job_each(
    stack: KubeStack, ids: Iterable[str], *, or_none: Iterable[str] = ()
) -> int:
    """Each of `ids` was created exactly once (each of `or_none` at most once: cancelled in
    time, it needs none), and nothing else was; returns the duplicates (0)."""
    created = job_creations(stack)
    duplicates = sum(n - 1 for n in created.values())
    assert duplicates == 0, {name: n for name, n in created.items() if n > 1}
    wanted = {f"kt-{i}" for i in ids}
    missing = wanted - set(created)
    assert not missing, [
        (r.verb, r.name, r.code) for r in stack.controller_requests() if r.name in missing
    ]
    assert set(created) <= wanted | {f"kt-{i}" for i in or_none}
    return duplicates


def listed_ids(client: httpx.Client) -> list[str]:
    """Every job the API knows, through the paged listing."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params).json()
        ids += [job["id"] for job in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


def until_answered(call: Any, *, timeout_s: float = 60) -> httpx.Response:
    """Retry through a controller that is down or restarting (connection refused or reset)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()  # type: ignore[no-any-return]
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the API never came back"
            time.sleep(0.05)


def wait_all(api: ApiServer, ids: Iterable[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    views: dict[str, dict[str, Any]] = {}
    for job_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        views[job_id] = api.wait(job_id, timeout_s=left)
    return views


# -- the controller SIGKILLed at random points -------------------------------------------------
JOBS = 200  # submitted; what each does:
RUN, FAIL = 48, 12  # a task process that succeeds / exits 2 (invalid params: failed, no retry)
# the other 140 wait in a queue (their Jobs are created suspended, as Kueue holds them: no
# pod) and are cancelled while the controller is being killed. A task process costs about
# half a CPU-second to start, and 2 busy cores run these tests: 60 processes is what fits.
KILLS = 4


def _request(i: int) -> dict[str, Any]:
    """Three in ten run a task: the first RUN succeed, the next FAIL fail."""
    if i % 10 >= 3:
        return {"kind": "noop", "params": {"steps": 1}, "queue": "team-a"}
    if (i // 10) * 3 + i % 10 < RUN:
        return {"kind": "noop", "params": {"steps": 4, "step_s": 0.25}}
    return {"kind": "noop", "params": {"fail": "exit", "exit_code": 2}}


def _expected(request: dict[str, Any]) -> str:
    if "queue" in request:
        return "cancelled"
    return "failed" if request["params"].get("fail") else "succeeded"


class Client(threading.Thread):
    """Submits every job (an Idempotency-Key each, so a POST retried after a kill gets the
    original job back), then cancels the queued ones, retrying through the kills."""

    def __init__(self, api: ApiServer, requests: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.base_url = api.base_url
        self.requests = requests
        self.ids: list[str] = []
        self.replays = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10) as client:
                for i, request in enumerate(self.requests):
                    headers = {"Idempotency-Key": f"fault-{i}"}
                    answer = until_answered(
                        lambda r=request, h=headers: client.post("/v1/jobs", json=r, headers=h)
                    )
                    assert answer.status_code in (200, 201), answer.text
                    self.replays += answer.status_code == 200
                    self.ids.append(answer.json()["id"])
                for job_id, request in zip(self.ids, self.requests, strict=True):
                    if "queue" in request:
                        answer = until_answered(lambda j=job_id: client.delete(f"/v1/jobs/{j}"))
                        assert answer.status_code in (202, 409), answer.text
        except BaseException as exc:
            self.error = exc


def test_the_controller_killed_at_random_points_loses_and_duplicates_nothing(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    rng = random.Random(20260407)
    requests = [_request(i) for i in range(JOBS)]
    assert Counter(map(_expected, requests)) == {"succeeded": RUN, "failed": FAIL, "cancelled": 140}
    with kubernetes_stack(control_plane, redis_db, tmp_path) as stack:
        api = stack.api
        started = time.monotonic()
        client = Client(api, requests)
        client.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            api.kill()
            api.start()
        client.join(120)
        assert client.error is None, client.error
        views = wait_all(api, client.ids, timeout_s=90)
        elapsed = time.monotonic() - started

        lost = [i for i in client.ids if views[i]["state"] not in TERMINAL]
        wrong = {
            i: (views[i]["state"], _expected(r))
            for i, r in zip(client.ids, requests, strict=True)
            if views[i]["state"] != _expected(r)
        }
        assert lost == []
        assert wrong == {}
        assert sorted(listed_ids(api.client)) == sorted(client.ids)  # nothing extra accepted
        ran = [views[i] for i, r in zip(client.ids, requests, strict=True) if "queue" not in r]
        twice = [(v["id"], v["state"], v["attempts"]) for v in ran if v["attempts"] != 1]
        assert twice == [], "a task was run twice"
        assert all(v["result"]["attempt"] == 1 for v in ran if v["state"] == "succeeded")
        queued = [i for i, r in zip(client.ids, requests, strict=True) if "queue" in r]
        duplicates = assert_one_job_each(stack, set(client.ids) - set(queued), or_none=queued)
        refound = sum(  # created before a kill, not yet marked: the next controller got 409
            1
            for r in stack.controller_requests()
            if (r.verb, r.resource, r.code) == ("create", "jobs", 409)
        )
    print(
        f"\nSIGKILL: jobs={JOBS} (ran {RUN + FAIL}, queued+cancelled {JOBS - RUN - FAIL})"
        f" kills={KILLS} replayed_posts={client.replays} creates_answered_409={refound}"
        f" lost=0 wrong_state=0 duplicates={duplicates} seconds={elapsed:.1f}"
    )


# -- connections cut and etcd compacted ---------------------------------------------------------
def test_connections_cut_and_etcd_compacted_repeatedly_miss_no_terminal_transition(
    kube_stack: KubeStack,
) -> None:
    api = kube_stack.api
    stop = threading.Event()
    rounds = 0

    def chaos() -> None:
        nonlocal rounds
        while not stop.wait(0.15):
            kube_stack.proxy.drop()  # every watch and call of the controller, mid-flight
            kube_stack.plane.compact()
            rounds += 1

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        ids = [api.submit("noop", {"steps": 3, "step_s": 0.1}) for _ in range(16)]
        views = wait_all(api, ids, timeout_s=90)
    finally:
        stop.set()
        thread.join()
    ended = {i: (v["state"], v.get("reason"), v.get("message")) for i, v in views.items()}
    assert {i: e for i, e in ended.items() if e[0] != "succeeded"} == {}
    for job_id in ids:  # the terminal transition was published, once
        states = [e["state"] for e in api.events(job_id) if e["type"] == "state"]
        assert states.count("succeeded") == 1
        assert states[-1] == "succeeded"
    calls = kube_stack.controller_requests()
    traced = Counter(
        r.name.split(".")[0]
        for r in calls
        if (r.verb, r.resource, r.code) == ("create", "events", 201)
    )  # best effort, as Kubernetes Events are: a call cut mid-flight loses its trace
    relists = sum(1 for r in calls if r.verb == "list" and r.code == 200)
    watches = sum(1 for r in calls if r.verb == "watch")
    duplicates = assert_one_job_each(kube_stack, ids)
    print(
        f"\nconnection faults: jobs={len(ids)} cuts+compactions={rounds} watches={watches}"
        f" relists={relists} traced_transitions={sum(traced.values())}"
        f" missed_transitions=0 duplicates={duplicates}"
    )


# -- the API server's own 429s (API Priority and Fairness) ----------------------------------------
def waits_after_429(calls: list[AuditRecord]) -> list[tuple[AuditRecord, float]]:
    """For each 429, how long the client waited before its next call for the same thing
    (verb, resource, namespace, name), measured from the server's request times."""
    waits = []
    for i, refused in enumerate(calls):
        if refused.code != 429:
            continue
        key = (refused.verb, refused.resource, refused.namespace, refused.name)
        later = (r for r in calls[i + 1 :] if (r.verb, r.resource, r.namespace, r.name) == key)
        following = next(later, None)
        if following is not None:
            waits.append((refused, following.at - refused.at))
    return waits


def test_the_api_servers_429s_with_retry_after_lose_nothing(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    """The controller's ServiceAccount gets the smallest share of the API server's
    concurrency and no queue: its bursts are refused with 429 and Retry-After, by the
    API server itself. A resync every half second: whatever wakes a job up must still wait
    out Retry-After (checked where the audit log names the object: a refused create does
    not; tests/unit/test_reconciler_backoff.py checks every call)."""
    with kubernetes_stack(control_plane, redis_db, tmp_path, resync_s=0.5) as stack:
        api = stack.api
        throttle(control_plane, namespace=stack.namespace, account=stack.installation.account)
        with ThreadPoolExecutor(max_workers=16) as burst:  # all at once: the reconciler's
            # workers then create Jobs side by side, more than the throttled level's seats
            ids = list(
                burst.map(lambda _: api.submit("noop", {"steps": 2, "step_s": 0.05}), range(32))
            )
        views = wait_all(api, ids, timeout_s=120)
        calls = sorted(stack.controller_requests(), key=lambda r: r.at)
        duplicates = assert_one_job_each(stack, ids)
    refused = [r for r in calls if r.code == 429]
    assert {v["state"] for v in views.values()} == {"succeeded"}
    assert refused, "the API server refused nothing: the throttle did not bite"
    # A refused create names no object (the body was never read): only named calls (get,
    # delete, logs of one job) can be matched with their retry.
    waits = [(r, w) for r, w in waits_after_429(calls) if r.name]
    early = [(r.verb, r.resource, r.name, round(w, 3)) for r, w in waits if w < 1.0]
    assert early == [], "called again before Retry-After"
    print(
        f"\n429s (API Priority and Fairness): jobs={len(ids)} calls={len(calls)}"
        f" refused={len(refused)} ({len(refused) / len(calls):.0%}) retried={len(waits)}"
        f" shortest_wait={min((w for _, w in waits), default=0):.2f}s lost=0"
        f" duplicates={duplicates}"
    )


# -- Redis restarted mid-run --------------------------------------------------------------------
def test_redis_restarted_mid_run_tasks_carry_on_and_end_right(
    control_plane: ControlPlane, own_redis: RedisServer, tmp_path: Path
) -> None:
    with kubernetes_stack(control_plane, own_redis.url, tmp_path) as stack:
        api = stack.api
        ok = [api.submit("noop", {"steps": 25, "step_s": 0.1}) for _ in range(3)]
        bad = api.submit("noop", {"steps": 25, "step_s": 0.1, "fail": "exit", "exit_code": 2})
        for job_id in [*ok, bad]:
            api.wait(job_id, {"running"})
        before = {i: api.job(i)["progress"] for i in ok}
        own_redis.stop()
        down = time.monotonic()
        time.sleep(1.5)
        own_redis.start()
        outage = time.monotonic() - down
        views = wait_all(api, [*ok, bad], timeout_s=60)
        assert [views[i]["state"] for i in ok] == ["succeeded"] * 3
        assert views[bad]["state"] == "failed"
        for job_id in ok:
            view = views[job_id]
            assert view["attempts"] == 1
            assert view["result"] == {"steps": 25, "attempt": 1, "payload_chars": 0}
            after = [e for e in api.events(job_id) if e["type"] == "progress"]
            assert after[-1]["current"] == 25  # progress resumed after the outage
            assert after[-1]["seq"] > (before[job_id] or {}).get("seq", 0)
        duplicates = assert_one_job_each(stack, [*ok, bad])
    print(
        f"\nredis restart: jobs=4 outage={outage:.1f}s re-run=0 wrong_state=0"
        f" duplicates={duplicates}"
    )
