"""Private servers a fault scenario may stop, kill and start again — never the shared
Redis (127.0.0.1:6379) or PostgreSQL (127.0.0.1:5432), which other sessions use.

* ``PrivateRedis``: a ``redis-server`` without persistence on a fixed free port, so
  a restart is an *empty* Redis at the same URL (what a Redis restart without AOF,
  or a failover to an empty replica, looks like to the stack).
* ``PrivatePostgres``: a throwaway PostgreSQL cluster under the test's tmp dir
  (initdb, trust auth on loopback, a free port) with a copy of the test database's
  schema, restartable with ``pg_ctl restart -m fast`` — every backend is terminated,
  as in a real database restart or failover.

Both are context managers: whatever happens in the test, the process is gone after.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from django.db import InterfaceError, OperationalError, connections

from tests.fixtures.processes import _port_open, free_port, wait_for

__all__ = ("PrivatePostgres", "PrivateRedis", "db_read", "django_default_database", "postgres_unavailable")

T = TypeVar("T")


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """A new, empty server on the same port."""
        assert self.proc is None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: _port_open(self.port), 10, what="redis-server")

    def kill(self) -> None:
        """SIGKILL: every message, reservation, lock and counter is gone with it."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgres_unavailable() -> str | None:
    """Why a private cluster cannot be created here, or None."""
    if _pg_bindir() is None:
        return "initdb/pg_ctl not found (/usr/lib/postgresql/*/bin or PATH)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root (initdb refuses root) and runuser is not available"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own, in a fresh directory under the system tmp
    (pytest's tmp dirs are private to their owner; as root the server runs as
    ``postgres`` through ``runuser`` — initdb refuses root — and must reach its files).
    Removed at exit."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        assert bindir is not None
        self.bindir = bindir
        workdir = Path(tempfile.mkdtemp(prefix="erc8004-faults-pg-"))
        self.datadir = workdir / "pgdata"
        self.logfile = workdir / "postgres.log"
        self.socketdir = workdir / "pgsock"
        self.port = free_port()
        self.workdir = workdir
        self.running = False

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True, cwd="/")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        self.socketdir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.socketdir, "postgres")
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        conf = (
            f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.socketdir}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
            "shared_buffers = 32MB\n"
        )
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.write(conf)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")
        self.running = True

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated, open transactions
        roll back, then the server accepts connections again."""
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "-m", "fast", "restart")

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-m", "immediate", "stop")
            self.running = False

    def __enter__(self) -> PrivatePostgres:
        """Create and start the cluster; if this machine cannot (initdb or pg_ctl
        fails), the test is skipped saying why."""
        try:
            self.init()
            self.start()
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            self.__exit__()
            reason = f"a private PostgreSQL cluster cannot be created here: {exc} {detail}".strip()
            print(f"\n{reason}")
            pytest.skip(reason)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def createdb_from(self, source: dict, dbname: str) -> str:
        """Create ``dbname`` as a copy of the database ``source`` (a Django
        ``settings_dict``; the test database: its migrated schema and whatever rows
        a transactional test starts from) and return its URL. pg_dump | psql, one pipe."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", dbname)
        env = dict(os.environ, PGPASSWORD=source.get("PASSWORD") or "")
        host, port = source["HOST"] or "127.0.0.1", str(source["PORT"] or 5432)
        dump_argv = [str(self.bindir / "pg_dump"), "--no-owner", "--no-privileges", "-h", host, "-p", port]
        dump_argv += ["-U", source["USER"], source["NAME"]]
        load_argv = [str(self.bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port)]
        load_argv += ["-U", "postgres", "-d", dbname]
        dump = subprocess.Popen(
            dump_argv,
            stdout=subprocess.PIPE,
            env=env,
            cwd="/",
        )
        restore = subprocess.run(
            load_argv,
            stdin=dump.stdout,
            capture_output=True,
            timeout=120,
            cwd="/",
        )
        dump.stdout.close()  # type: ignore[union-attr]
        assert dump.wait(timeout=60) == 0, "pg_dump of the test database failed"
        assert restore.returncode == 0, restore.stderr.decode(errors="replace")[-2000:]
        return self.url(dbname)


@contextlib.contextmanager
def django_default_database(url: str) -> Iterator[None]:
    """Point this process's ``default`` connection at ``url`` (same engine and
    options), so the test's own ORM reads — pipeline setup, waits, the verdict —
    see what the workers write there; the test database is restored after."""
    parsed = urlsplit(url)
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict.update(
        HOST=parsed.hostname, PORT=parsed.port, NAME=parsed.path.lstrip("/"), USER=parsed.username, PASSWORD=""
    )
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def db_read(query: Callable[[], T]) -> T | None:
    """``query()``, or None while the database is restarting. A connection the restart
    broke is dropped and the query tried once more on a new one — what Django does
    between requests."""
    for _ in range(2):
        try:
            return query()
        except (OperationalError, InterfaceError):
            connections["default"].close()
    return None
