"""A finished job with files, for the SDK's and CLI's artifact tests: a real `noop` job (it
leaves its attempt counter, `attempts-0`), plus outputs put under its folder in the API's
filesystem store as a task would write them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.servers import ApiServer

BIG = 3 * 1024 * 1024 + 17  # over the CLI's progress bar threshold, several chunks


@dataclass(frozen=True)
class JobFiles:
    job_id: str
    files: dict[str, bytes]  # path relative to the job's folder -> content


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
    return JobFiles(job_id, files)
