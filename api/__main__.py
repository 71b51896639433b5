"""`kubetask-server` (or `python -m kubetask.api`): API + controller + backend in one process.

kubetask-server [--host H] [--port P]     serve (the embedded default on 127.0.0.1)
kubetask-server render REQUEST.json       print the Kubernetes objects a request becomes

Without KUBETASK_TOKENS_FILE every caller is an admin: the server then listens on loopback
only, and refuses (exit 2) any other address. At start the soft limit on open files is raised
to the hard limit (each open stream holds a connection, and often a Redis one).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import logging
import resource
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import SettingsError
from redis.exceptions import RedisError

from kubetask.api.app import create_app
from kubetask.api.auth import TokenFile, TokensFileError
from kubetask.api.render import NeedsTheStore, render
from kubetask.api.runtime import Runtime
from kubetask.api.settings import Settings, invalid_settings
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.redis_server import RedisServer
from kubetask.kinds import KindError
from kubetask.storage import InvalidStoreUrl, StoreError

log = logging.getLogger("kubetask")

STARTUP_FAILURE = 3  # uvicorn's exit code when the app fails to start
GRACEFUL_S = 10  # what requests get to finish on shutdown (the chart's grace: 30 s)
STREAMS_END_S = 2.0  # what streams get to say goodbye before uvicorn closes connections
# uvicorn's fast paths, installed with the server (its `standard` extra's): libuv's event
# loop and the C HTTP parser, named so that a server without them fails to start rather
# than running slower on asyncio's loop and h11
LOOP = "uvloop"
HTTP = "httptools"


def ready_url(host: str, port: int) -> str:
    """Where a person reaches the server: `http://127.0.0.1:8000`, `http://[::1]:8000`."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; not 0.0.0.0, a hostname or an interface address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(settings: Settings) -> str | None:
    """Why the server must not start with these settings, or None."""
    if settings.tokens_file is None:
        if not is_loopback(settings.host):
            return (
                f"refusing to listen on {settings.host} without authentication: set "
                "KUBETASK_TOKENS_FILE (bearer tokens), or listen on 127.0.0.1"
            )
        return None
    try:
        table = TokenFile(settings.tokens_file).table()
    except TokensFileError as exc:
        return f"bad tokens file: {exc}"
    if not len(table):
        return f"the tokens file {settings.tokens_file} holds no tokens: nobody could call"
    return None


# Where the hard limit is "unlimited" (macOS): Linux's default most per process (nr_open)
UNLIMITED_FILES = 1 << 20


def files_limit_target(soft: int, hard: int) -> int:
    """The soft limit on open files to ask for: the hard one (its figure for unlimited);
    never lower than `soft`."""
    if soft == resource.RLIM_INFINITY:
        return soft
    most = UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    return max(soft, most)


def raise_files_limit() -> int:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit, as
    Go's runtime does (a soft 1024, or a `ulimit -n 256`, is a few hundred streams); the
    limit now, which its children (the embedded Redis, local tasks) inherit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = files_limit_target(soft, hard)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # above what the system allows (macOS)
            log.warning("open files: could not raise the limit of %d to %d: %s", soft, target, exc)
            return soft
        log.info("open files: up to %d (the soft limit raised from %d)", target, soft)
    else:
        log.info("open files: up to %d", soft)
    return target


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or exit 2 with one line naming each bad one."""
    try:
        return Settings(**overrides)
    except (ValidationError, SettingsError) as exc:
        print(f"kubetask-server: {invalid_settings(exc)}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "render":
        parser = argparse.ArgumentParser(prog="kubetask-server render")
        parser.add_argument("request", type=Path, help="a job request as JSON")
        options = parser.parse_args(args[1:])
        try:
            settings = settings_or_exit()
            print(render(options.request.read_text(), settings), end="")
        except (
            ValidationError,
            InvalidRequest,
            KindError,
            NeedsTheStore,
            RedisError,
            InvalidStoreUrl,
            StoreError,
            json.JSONDecodeError,
            OSError,
        ) as exc:
            sys.exit(f"kubetask-server render: {exc}")
        return
    parser = argparse.ArgumentParser(prog="kubetask-server", description=__doc__)
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8000)")
    options = parser.parse_args(args)
    overrides = {k: v for k, v in (("host", options.host), ("port", options.port)) if v is not None}
    settings = settings_or_exit(**overrides)
    if (why := refusal(settings)) is not None:
        print(f"kubetask-server: {why}", file=sys.stderr)
        sys.exit(2)
    with contextlib.suppress(OSError):  # a new one: its records, uploads and artifacts the
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner's alone
    if settings.redis_url is None and (used := embedded_in_use(settings)) is not None:
        print(f"kubetask-server: {used}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per request, with the whole URL: a webhook's
        logging.getLogger(chatty).setLevel(logging.WARNING)  # user:password and token too
    try:
        app = create_app(settings)
    except (KindError, InvalidStoreUrl) as exc:
        print(f"kubetask-server: {exc}", file=sys.stderr)
        sys.exit(2)
    raise_files_limit()  # before the embedded Redis and the tasks start: they inherit it
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_S,
        loop=LOOP,
        http=HTTP,
    )
    server = Server(config, app=app)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run exits when the app failed to start


def embedded_in_use(settings: Settings) -> str | None:
    """Why the embedded Redis cannot start: another server runs on the same data folder
    (`make run` twice). Its start would refuse too, with a traceback; this says it in one
    line, before anything starts."""
    why = RedisServer(settings.data_dir / "redis").in_use()
    if why is None:
        return None
    return f"{why}: another kubetask-server runs with KUBETASK_DATA_DIR={settings.data_dir}"


class Server(uvicorn.Server):
    """uvicorn's server, ending the event streams first when it shuts down (SIGTERM,
    SIGINT). Left to uvicorn, a shutdown waits for every open stream's client to leave (a
    dashboard tab never does) before the app stops: the reconciler, the Lease and the
    embedded Redis would stay. Requests still running GRACEFUL_S later are cancelled."""

    def __init__(self, config: uvicorn.Config, *, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            gc.collect()
            gc.freeze()  # what the start made (modules, models, routes): out of every later walk
            base = ready_url(self.config.host, self._bound_port())
            log.info("kubetask is ready: API %s/v1, dashboard %s/", base, base)

    def _bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        runtime: Runtime | None = getattr(self._app.state, "runtime", None)
        if runtime is not None:  # SSE clients are told to reconnect, WebSockets get 1001
            runtime.hub.close()
            await runtime.hub.wait_unheard(STREAMS_END_S)
        await super().shutdown(sockets)


if __name__ == "__main__":
    main()
