"""A local anvil chain as a child process: what the test suite, the benchmark and ``make run`` build on.

The binary is started directly (not through ``node_modules/.bin/anvil``, a Node wrapper that spawns a child
of its own) so that ``pid`` is the chain itself and ``stop()`` cannot leave an orphan behind. On Linux the
child additionally gets ``PR_SET_PDEATHSIG``: if the Python process dies without cleaning up (SIGKILL, a
crashed test run), the kernel stops anvil too.

anvil picks a free port itself (``--port 0``): there is no window in which another process can take a port we
chose. The port is read from its ``Listening on 127.0.0.1:<port>`` line or, when ``silent`` suppresses that
line, from the listening socket the process owns (``/proc``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from django.conf import settings

__all__ = ("ANVIL_VERSION", "AnvilError", "AnvilProcess", "anvil_binary_path")

logger = logging.getLogger("erc8004.indexing.devnet.anvil")

# package.json pins @foundry-rs/anvil to this version.
ANVIL_VERSION = "1.7.1"

_LISTENING = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")
_PLATFORM_PACKAGES = {
    ("linux", "x86_64"): "anvil-linux-amd64",
    ("linux", "aarch64"): "anvil-linux-arm64",
    ("darwin", "x86_64"): "anvil-darwin-amd64",
    ("darwin", "arm64"): "anvil-darwin-arm64",
}
_PR_SET_PDEATHSIG = 1

# Every instance not yet stopped, so an interpreter exit without teardown still stops them.
_RUNNING: set[AnvilProcess] = set()
_RUNNING_LOCK = threading.Lock()


class AnvilError(RuntimeError):
    """anvil is missing, did not start, or died."""


def anvil_binary_path() -> Path:
    """The anvil binary that ``npm ci`` put in ``node_modules`` for this platform."""
    key = (sys.platform, platform.machine().lower())
    package = _PLATFORM_PACKAGES.get(key)
    if package is None:
        raise AnvilError(f"no anvil package for platform {key}; supported: {sorted(_PLATFORM_PACKAGES)}")
    path = Path(settings.BASE_DIR) / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
    if not path.is_file():
        raise AnvilError(f"anvil binary not found at {path}: run `make deps` (installs the pinned node tools)")
    return path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _listening_port_from_proc(pid: int) -> int | None:
    """The TCP port the process listens on, from /proc (Linux); None if not (yet) listening."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A = LISTEN
                    return int(local.split(":")[1], 16)
    except OSError:
        return None
    return None


class AnvilProcess:
    """One anvil chain on 127.0.0.1 with a port it chose itself.

    Use as a context manager, or call ``start()`` / ``stop()``. Options map to anvil flags: ``chain_id``,
    ``block_time`` (interval mining, seconds), ``accounts`` (pre-funded accounts from the default mnemonic),
    ``slots_in_an_epoch`` (1 makes ``safe``/``finalized`` trail the head by 1/2 blocks), ``gas_limit`` (block
    gas limit), ``silent``; ``extra_args`` passes anything else verbatim.

    anvil's own output goes to a temporary log file (``log_path``), never to a pipe nobody drains; it is
    deleted on ``stop()`` unless ``keep_log``.

    ``die_with_parent`` (Linux): the kernel stops anvil when the *thread* that started it exits. Keep the
    default when starting from the main thread (tests, commands); pass False when starting from a
    short-lived thread and rely on ``stop()``/atexit instead.
    """

    def __init__(
        self,
        *,
        chain_id: int | None = None,
        block_time: float | None = None,
        accounts: int | None = None,
        slots_in_an_epoch: int | None = None,
        gas_limit: int | None = None,
        silent: bool = True,
        extra_args: tuple[str, ...] | list[str] = (),
        binary: Path | str | None = None,
        startup_timeout: float = 15.0,
        keep_log: bool = False,
        die_with_parent: bool = True,
        port: int = 0,
    ) -> None:
        self.requested_port = port  # 0: let anvil choose a free one
        self.chain_id = chain_id
        self.block_time = block_time
        self.accounts = accounts
        self.slots_in_an_epoch = slots_in_an_epoch
        self.gas_limit = gas_limit
        self.silent = silent
        self.extra_args = tuple(extra_args)
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout = startup_timeout
        self.keep_log = keep_log
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<AnvilProcess pid={self.pid} url={self.rpc_url if self.port else None}>"

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise AnvilError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The exact argument list ``start()`` runs."""
        binary = self.binary or anvil_binary_path()
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.requested_port)]
        if self.chain_id is not None:
            args += ["--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            args += ["--block-time", f"{self.block_time:g}"]
        if self.accounts is not None:
            args += ["--accounts", str(self.accounts)]
        if self.slots_in_an_epoch is not None:
            args += ["--slots-in-an-epoch", str(self.slots_in_an_epoch)]
        if self.gas_limit is not None:
            args += ["--gas-limit", str(self.gas_limit)]
        if self.silent:
            args.append("--silent")
        return args + list(self.extra_args)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> AnvilProcess:
        if self._process is not None:
            raise AnvilError("already started")
        args = self.command()
        fd, log_name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            try:
                self._process = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                )
            except OSError as exc:
                self.stop()
                raise AnvilError(f"cannot run {args[0]}: {exc} (run `make deps`)") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.stop()
            raise
        logger.info("anvil started", extra={"pid": self.pid, "port": self.port})
        return self

    def _wait_for_port(self) -> int:
        assert self._process is not None
        assert self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AnvilError(f"anvil exited with {self._process.returncode}: {self._log_tail()}")
            if self.silent:
                port = _listening_port_from_proc(self._process.pid)
            else:
                match = _LISTENING.search(self.log_path.read_bytes())
                port = int(match.group(1)) if match else None
            if port:
                return port
            time.sleep(0.02)
        raise AnvilError(f"anvil did not listen within {self.startup_timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-2000:].decode(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate anvil and reap it (SIGKILL after ``timeout``); idempotent."""
        process, self._process = self._process, None
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
            logger.info("anvil stopped", extra={"pid": process.pid})
        if self.log_path is not None and not self.keep_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
        self.port = None


@atexit.register
def _stop_all() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for anvil in running:
        anvil.stop()
