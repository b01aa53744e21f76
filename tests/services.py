"""Throwaway PostgreSQL and Redis servers for the test session.

Real servers, not mocks: ``initdb``/``pg_ctl`` from the PostgreSQL binaries on the machine and
``redis-server``, each on a free loopback port in a temporary directory, stopped at the end.
``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` system user.
Set ``CRYPTOTA_TEST_DATABASE_URL`` / ``CRYPTOTA_TEST_REDIS_URL`` to use servers you already run.

A cluster started with ``timescale=True`` preloads the timescaledb library (TimescaleDB refuses
``CREATE EXTENSION`` otherwise); :func:`timescale_library` tells whether the machine has it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def timescale_library(bindir: Path | None = None) -> Path | None:
    """The timescaledb loader library of the PostgreSQL server on this machine, if installed
    (``<libdir>/timescaledb.so``; Debian puts libdir beside ``bin``)."""
    bindir = bindir or _pg_bindir()
    if bindir is None:
        return None
    candidates = [bindir.parent / "lib" / "timescaledb.so"]
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()) / "timescaledb.so")
    return next((path for path in candidates if path.exists()), None)


@dataclass
class PostgresServer:
    url: str
    port: int
    datadir: Path
    bindir: Path
    run_as: str | None

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if self.run_as:
            args = ["runuser", "-u", self.run_as, "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def stop(self) -> None:
        try:
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"]
            )
        finally:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres(*, timescale: bool = False) -> PostgresServer:
    """A new cluster on a free port; with ``timescale`` it preloads timescaledb (telemetry off)."""
    bindir = _pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; run `make test`, which "
            "installs them"
        )
    if timescale and timescale_library(bindir) is None:
        raise RuntimeError(f"timescaledb.so is not installed for the PostgreSQL in {bindir}")
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="cryptota-pg-"))
    datadir = root / "data"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    server = PostgresServer(
        url=f"postgresql+psycopg://cryptota@127.0.0.1:{port}/cryptota",
        port=port,
        datadir=datadir,
        bindir=bindir,
        run_as=run_as,
    )
    server._run(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "cryptota",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]
    )
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        "-c shared_buffers=256MB"
    )
    if timescale:
        options += (
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            " -c timescaledb.max_background_workers=4 -c max_worker_processes=16"
        )
    server._run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ]
    )
    server._run(
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "cryptota", "cryptota"]
    )
    return server


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found; run `make test`, which installs it")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cryptota-redis-"))
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return RedisServer(
                    url=f"redis://127.0.0.1:{port}/0", process=process, workdir=workdir
                )
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")
