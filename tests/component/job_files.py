"""A finished job with files, for the SDK's and CLI's artifact tests: a real `noop` job (it
leaves its attempt counter, `attempts-0`, and the controller archives its log as
`logs/output.log` once it ends), plus outputs put under its folder in the API's filesystem
store as a task would write them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from tests.servers import ApiServer

BIG = 3 * 1024 * 1024 + 17  # over the CLI's progress bar threshold, several chunks


@dataclass(frozen=True)
class JobFiles:
    job_id: str
    files: dict[str, bytes]  # path relative to the job's folder -> content


ARCHIVED_LOG = "logs/output.log"


def wait_for_archived_log(api: ApiServer, job_id: str, timeout_s: float = 20) -> None:
    """The controller archives a finished job's log in the background: wait until it is listed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = api.client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
        if any(item["path"] == ARCHIVED_LOG for item in listed):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}'s log was not archived within {timeout_s} s")


def job_with_files(api: ApiServer) -> JobFiles:
    job_id = api.submit("noop", {"steps": 1})
    assert api.wait(job_id)["state"] == "succeeded"
    files = {
        "model.pt": os.urandom(BIG),
        "plots/confusion matrix.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
        "metrics.json": b'{"accuracy": 0.9}',
    }
    folder = api.data_dir / "artifacts" / job_id
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    files["attempts-0"] = (folder / "attempts-0").read_bytes()
    wait_for_archived_log(api, job_id)
    files[ARCHIVED_LOG] = (folder / ARCHIVED_LOG).read_bytes()
    return JobFiles(job_id, files)
