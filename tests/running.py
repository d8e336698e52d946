"""Running digest from a test: its commands and its web app, in this process where a process is not the
point, as a real process where it is (a kill, a signal, a lock between processes, uvicorn's workers, the
browser).

- ``cli(...)``: a ``digest`` command through click's ``CliRunner``, its exit code, stdout and stderr as a
  process would give them.
- ``web(...)``: ``digest serve``'s app (``create_app`` and uvicorn with the options ``digest serve`` uses)
  on a real socket, served from a thread: real HTTP, real cookies, no process start-up.
- ``process(...)`` and ``serve_process(...)``: the real ``digest`` executable.

Each takes an environment as ``digest_env()`` makes it: this process's, without any ``DIGEST_*`` variable of
the developer's shell, with the test signing key, and what the test adds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from click.testing import CliRunner
from conftest import TEST_SECRET_KEY

from digest.cli import main
from digest.settings import load_settings
from digest.web.server import start, uvicorn_options
from digest.wiring import Services

DIGEST = str(Path(sys.executable).parent / "digest")


def digest_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``DIGEST_*``, with the test signing key, and ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return {**base, "DIGEST_SECRET_KEY": TEST_SECRET_KEY, **extra}


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` for the duration, then what it was."""
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


@dataclass(frozen=True)
class Ran:
    """What a command did, with the names of ``subprocess.CompletedProcess``."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Ran:
        """This, when the command exited 0; else the error naming its stderr."""
        if self.returncode != 0:
            raise AssertionError(f"digest {' '.join(self.args)} exited {self.returncode}: {self.stderr}")
        return self


def cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, input: str | None = None
) -> Ran:
    """``digest ARGS`` in this process, in ``env`` (``digest_env()`` when not given) and ``cwd``."""
    chdir = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    with environment(env if env is not None else digest_env()), chdir:
        result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return Ran(args, result.exit_code, result.stdout, result.stderr)


def process(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The ``digest`` executable run to its end in a process of its own."""
    return subprocess.run(
        [DIGEST, *args],
        cwd=cwd,
        env=dict(env if env is not None else digest_env()),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def web(cfg: Path, port: int, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``digest serve --config CFG --port PORT`` served from a thread of this process, in ``env`` for the
    duration: its base URL once it serves. Stopped as SIGTERM stops it (requests and queued mail finish)."""
    with environment(env if env is not None else digest_env()):
        services = Services(load_settings(cfg))
        app, sock = start(services, "127.0.0.1", port)
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(services.settings)))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                assert thread.is_alive(), "the web app stopped before it served"
                assert time.monotonic() < deadline, "the web app did not start"
                time.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()


@contextlib.contextmanager
def serve_process(
    cfg: Path, port: int, env: Mapping[str, str] | None = None, *extra: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real ``digest serve`` process on 127.0.0.1:PORT, and the process, once its /healthz answers."""
    proc = subprocess.Popen(
        [DIGEST, "serve", "--port", str(port), "--config", str(cfg), *extra],
        env=dict(env if env is not None else digest_env()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "digest serve did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
