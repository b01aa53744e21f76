"""PostgreSQL and Redis run as plain processes of this machine, without Docker.

Two users: ``cryptota stack`` keeps its servers in its folder across restarts (durable settings),
and the test suite starts throwaway ones (``throwaway=True``: no fsync, deleted on stop). Both go
through the same code so that what the tests exercise is what an operator runs.

``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` system user
(Debian's server package creates it); its folder must then be reachable by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptota_core.errors import CryptotaError

SERVICE_USER = "postgres"
"""Who runs PostgreSQL when we are root."""

DATABASE_USER = "cryptota"
"""The cluster's superuser (trust authentication on loopback only)."""


class ServerError(CryptotaError):
    """A local server could not be set up or started; the message says what to do."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_bindir() -> Path | None:
    """The folder of ``pg_ctl`` and ``initdb``: on PATH, else Debian's newest version's."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def timescale_library(bindir: Path | None = None) -> Path | None:
    """The timescaledb loader library of this machine's PostgreSQL server, if installed
    (``<libdir>/timescaledb.so``; Debian puts libdir beside ``bin``)."""
    bindir = bindir or postgres_bindir()
    if bindir is None:
        return None
    candidates = [bindir.parent / "lib" / "timescaledb.so"]
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()) / "timescaledb.so")
    return next((path for path in candidates if path.exists()), None)


def _run_as() -> str | None:
    return SERVICE_USER if os.geteuid() == 0 else None


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``root`` (``root/data``, log ``root/postgres.log``) on loopback.

    ``timescale`` preloads the timescaledb library (TimescaleDB refuses ``CREATE EXTENSION``
    otherwise). ``throwaway`` trades durability for speed and deletes ``root`` on stop."""

    root: Path
    port: int
    timescale: bool = False
    throwaway: bool = False
    bindir: Path = field(default_factory=lambda: _required_bindir())
    run_as: str | None = field(default_factory=_run_as)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = DATABASE_USER) -> str:
        return f"postgresql+psycopg://{DATABASE_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.run_as:
            args = ["runuser", "-u", self.run_as, "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise ServerError(
                f"{' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.run_as:
            return
        entry = pwd.getpwnam(self.run_as)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if self._run(["test", "-w", str(self.root)], check=False).returncode:
            raise ServerError(
                f"PostgreSQL runs as the {self.run_as!r} user here (initdb refuses root), which "
                f"cannot reach {self.root}; choose a folder outside /root (cryptota stack --dir)"
            )

    def start(self) -> LocalPostgres:
        """Create the cluster on first use, then start it and wait until it accepts connections."""
        if self.timescale and timescale_library(self.bindir) is None:
            raise ServerError(f"timescaledb.so is not installed for PostgreSQL in {self.bindir}")
        self._prepare_root()
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    DATABASE_USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    *(["--no-sync"] if self.throwaway else []),
                ]
            )
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c max_connections=200"
        )
        if self.throwaway:
            options += (
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c shared_buffers=256MB"
            )
        if self.timescale:
            options += (
                " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
                " -c timescaledb.max_background_workers=4 -c max_worker_processes=16"
            )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "-t",
                "120",
                "start",
            ]
        )
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its URL."""
        done = self._run(
            [
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                DATABASE_USER,
                name,
            ],
            check=False,
        )
        if done.returncode and "already exists" not in done.stderr:
            raise ServerError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster (``fast``: open sessions are rolled back, committed data is kept;
        a throwaway cluster stops ``immediate`` and its folder is deleted)."""
        try:
            if (self.datadir / "postmaster.pid").exists():
                mode = "immediate" if self.throwaway else "fast"
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]
                )
        finally:
            if self.throwaway:
                shutil.rmtree(self.root, ignore_errors=True)


def _required_bindir() -> Path:
    bindir = postgres_bindir()
    if bindir is None:
        raise ServerError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; `make system-packages` "
            "installs them (apt-get install postgresql)"
        )
    return bindir


@dataclass
class LocalRedis:
    """redis-server on loopback with its files in ``root``. Durable (append-only file) unless
    ``throwaway``: queued Celery steps survive a restart of the stack."""

    root: Path
    port: int
    throwaway: bool = False
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError(
                "redis-server not found; `make system-packages` installs it "
                "(apt-get install redis-server)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        durability = ["--save", "", "--appendonly", "no" if self.throwaway else "yes"]
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - the server keeps it
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)]
        self.process = subprocess.Popen(
            [*argv, *durability],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(self.port):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"redis-server did not start on port {self.port} (see {self.root})")

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file and exits), SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.throwaway:
            shutil.rmtree(self.root, ignore_errors=True)
