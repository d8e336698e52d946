"""Running the web app (``digest serve``) as every other command runs: a problem it can name stops it with
one line and exit 2 before anything listens, and it says it serves only once it does.

Before anything listens: the signing keys are checked (``create_app``), the database is opened (a
PostgreSQL server that does not answer, a SQLite file that cannot be written) and the address is bound
here, not inside uvicorn (a port in use, an address this machine does not have), each a ``DigestError``
naming the setting or option. Then uvicorn serves that socket, from this process or from ``workers``
processes, trusting ``X-Forwarded-*`` only from ``[web] trusted_proxies``. The "serving" line is printed
once the app has started (its papers indexed) in every process.

Stopping: Ctrl-C (SIGINT) ends it with 130, SIGTERM (a service manager's stop) with 0, both after the
requests under way are answered and the queued confirmation emails are sent.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from digest.errors import EXIT_INTERRUPTED, ConfigError, DigestError
from digest.settings import Settings
from digest.wiring import Services

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker whose app did not start


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening; ConfigError naming the option otherwise."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host}: {exc.strerror}", key="--host", hint="give an address of this machine"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        taken = exc.errno in (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            key="--port" if taken else "--host",
            hint="stop what uses that port or choose another with --port"
            if taken
            else "give an address of this machine (--host), or a port this user may open",
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    trusted = settings.web.trusted_proxies
    """uvicorn's options for ``digest serve``."""
    return {
        "log_level": "warning",
        "log_config": None,  # uvicorn's lines go through digest's own logging (redacted, one format)
        "server_header": False,
        "lifespan": "on",
        # Without proxies named, uvicorn must not believe X-Forwarded-For from anyone (its default trusts
        # 127.0.0.1, so any local proxy, or a client through one, could pick its own rate-limit bucket).
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }


class _Server(uvicorn.Server):
    """A uvicorn server that says when it serves."""

    def __init__(self, config: uvicorn.Config, serving: Callable[[], None]) -> None:
        super().__init__(config)
        self.serving = serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.serving()


class _Workers(Multiprocess):
    """uvicorn's worker processes, saying when they all serve and whether they were interrupted."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], serving: Callable[[], None]
    ) -> None:
        super().__init__(config, sockets)
        self.serving = serving
        self.interrupted = False

    def init_processes(self) -> None:
        super().init_processes()
        if all(p.wait_until_ready(60, self.should_exit) for p in self.processes):
            self.serving()

    def handle_int(self) -> None:
        self.interrupted = True
        super().handle_int()


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def start(services: Services, host: str, port: int) -> tuple[Starlette, socket.socket]:
    """What ``digest serve`` does before it serves: the app built (its keys checked), the database opened
    (and migrated), the address bound; a DigestError naming the setting or option otherwise."""
    from digest.web.app import create_app

    app = create_app(services)
    with services.open_store():
        pass
    return app, listen(host, port)


def serve(services: Services, host: str, port: int, workers: int, serving: Callable[[], None]) -> int:
    """Serve the web app until stopped (see the module's docstring); the exit status, or a DigestError."""
    settings = services.settings
    app, sock = start(services, host, port)
    if workers == 1:
        server = _Server(uvicorn.Config(app, **uvicorn_options(settings)), serving)
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except SystemExit as exc:
            if exc.code != STARTUP_FAILURE:
                raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        if not server.started:
            raise DigestError("the web app did not start", hint="run digest serve -vv to see why")
        return 0
    # Each worker process builds its own app from the same config (uvicorn imports the factory by name).
    assert settings.config_path is not None
    os.environ["DIGEST_CONFIG"] = str(Path(settings.config_path))
    config = uvicorn.Config(
        "digest.web:app_from_environment", factory=True, workers=workers, **uvicorn_options(settings)
    )
    supervisor = _Workers(config, [sock], serving)
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise DigestError(
            "the web app did not start in its worker processes", hint="run digest serve -vv to see why"
        )
    return EXIT_INTERRUPTED if supervisor.interrupted else 0
