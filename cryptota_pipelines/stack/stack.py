"""The production deployment on one machine, without Docker: what docker-compose.yml runs, as
plain processes under one supervisor.

PostgreSQL (Dagster's storage and the candle store, TimescaleDB where installed), Redis (cache
and Celery broker), the user-code gRPC server, the daemon, the webserver and N Celery workers,
on the repository's production ``dagster.yaml`` and a workspace file pointing at the local code
server. A server that is configured (``CRYPTOTA_DATABASE_URL``, ``DAGSTER_PG_*``,
``CRYPTOTA_REDIS_URL``) is used instead of starting one. SIGTERM or SIGINT stops every process,
newest first; a service that dies stops the whole stack, so nothing runs half-deployed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from cryptota_core.redact import mask_url_password
from cryptota_core.settings import Settings
from cryptota_pipelines.executors import BROKER_ENV
from cryptota_pipelines.stack.processes import (
    VENV_BIN,
    Service,
    celery_worker_argv,
    code_server_argv,
    daemon_argv,
    grpc_ready,
    grpc_workspace,
    http_ready,
    wait_for,
    webserver_argv,
)
from cryptota_pipelines.stack.servers import (
    LocalPostgres,
    LocalRedis,
    ServerError,
    timescale_library,
)

PROJECT = Path(__file__).resolve().parents[2]
"""The project folder: its dagster.yaml (production instance) and celery.yaml (worker config)."""

START_TIMEOUT = 180.0


class StackSpec(BaseModel):
    """What ``cryptota stack`` runs: where it keeps its state, how many workers, which ports."""

    model_config = ConfigDict(frozen=True)

    root: Path = Field(description="The stack's folder: servers' data, Dagster home, logs.")
    workers: int = Field(default=2, ge=0, le=32, description="Celery workers (one step each).")
    web_port: int = Field(default=3000, ge=1, le=65535)
    grpc_port: int = Field(default=4000, ge=1, le=65535)
    postgres_port: int = Field(default=5433, ge=1, le=65535)
    redis_port: int = Field(default=6380, ge=1, le=65535)


def default_root(settings: Settings) -> Path:
    """``$CRYPTOTA_HOME/stack``; as root ``/var/lib/cryptota/stack``, because PostgreSQL then
    runs as the ``postgres`` user, who cannot reach root's home."""
    return Path("/var/lib/cryptota/stack") if os.geteuid() == 0 else settings.home / "stack"


def dagster_pg_env(storage_url: str) -> dict[str, str]:
    """The ``DAGSTER_PG_*`` variables the production dagster.yaml reads, for ``storage_url``."""
    url = make_url(storage_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database or "",
    }


@dataclass
class Stack:
    """The running deployment. :meth:`start` brings it up, :meth:`stop` takes it all down."""

    spec: StackSpec
    settings: Settings
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    postgres: LocalPostgres | None = None
    redis: LocalRedis | None = None
    services: list[Service] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return self.spec.root / "dagster"

    @property
    def workspace(self) -> Path:
        return self.dagster_home / "workspace.yaml"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.web_port}"

    @property
    def state_file(self) -> Path:
        return self.spec.root / "stack.json"

    @property
    def env_file(self) -> Path:
        """``set -a; . stack.env; set +a`` points a shell's dagster and cryptota commands here."""
        return self.spec.root / "stack.env"

    # ------------------------------------------------------------------ bring up
    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Servers, then instance files, then services; each waited for before the next."""
        self.spec.root.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        try:
            on_step("servers")
            self.env = self._environment()
            self._write_instance_files()
            self._start_services(on_step)
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def _check_ports(self) -> None:
        ports = {"--port": self.spec.web_port, "--grpc-port": self.spec.grpc_port}
        if self._local_postgres_needed():
            ports["--postgres-port"] = self.spec.postgres_port
        if self._local_redis_needed():
            ports["--redis-port"] = self.spec.redis_port
        for flag, port in ports.items():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    raise ServerError(
                        f"port {port} is in use; choose another with {flag}"
                    ) from None

    def _local_postgres_needed(self) -> bool:
        return self.settings.database_url is None or "DAGSTER_PG_HOST" not in self.environ

    def _local_redis_needed(self) -> bool:
        return self.settings.redis_url is None or self.settings.celery_broker_url is None

    def _environment(self) -> dict[str, str]:
        """Every service's environment: ours, plus where the stores, broker and instance are."""
        if self.settings.database_url and self.settings.database_url.startswith("sqlite"):
            raise ServerError(
                "the stack's processes share the candle store: set CRYPTOTA_DATABASE_URL to "
                "PostgreSQL (or unset it, and the stack runs its own)"
            )
        env = dict(self.environ)
        # The services' own scripts (celery, dagster-celery) are in our environment's bin.
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)])
        if self._local_postgres_needed():
            self.postgres = LocalPostgres(
                root=self.spec.root / "postgres",
                port=self.spec.postgres_port,
                timescale=timescale_library() is not None,
            ).start()
        if self.settings.database_url is None:
            assert self.postgres is not None
            env["CRYPTOTA_DATABASE_URL"] = self.postgres.create_database("cryptota")
        if "DAGSTER_PG_HOST" not in self.environ:
            assert self.postgres is not None
            env.update(dagster_pg_env(self.postgres.create_database("dagster")))
        if self._local_redis_needed():
            self.redis = LocalRedis(root=self.spec.root / "redis", port=self.spec.redis_port)
            self.redis.start()
        if self.settings.redis_url is None:
            assert self.redis is not None
            env["CRYPTOTA_REDIS_URL"] = self.redis.url(0)
        if self.settings.celery_broker_url is None:
            assert self.redis is not None
            env[BROKER_ENV] = self.redis.url(1)
        env["DAGSTER_HOME"] = str(self.dagster_home)
        return env

    def _write_instance_files(self) -> None:
        production = PROJECT / "deploy" / "dagster.yaml"
        if not production.exists():
            raise ServerError(f"{production} not found: run the stack from a project checkout")
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(production, self.dagster_home / "dagster.yaml")
        self.workspace.write_text(grpc_workspace(self.spec.grpc_port))

    def _start_services(self, on_step: Callable[[str], None]) -> None:
        logs = self.spec.root / "logs"
        logs.mkdir(exist_ok=True)

        def service(name: str, argv: list[str]) -> Service:
            started = Service(name=name, argv=argv, env=self.env, cwd=logs)
            started.start()
            self.services.append(started)
            return started

        on_step("user-code server")
        code = service("user-code", code_server_argv(self.spec.grpc_port))
        self._wait(code, lambda: grpc_ready(self.spec.grpc_port, self.env))
        on_step("daemon")
        service("daemon", daemon_argv(self.workspace))
        on_step("webserver")
        web = service("webserver", webserver_argv(self.workspace, self.spec.web_port))
        self._wait(web, lambda: http_ready(f"{self.web_url}/server_info"))
        if self.spec.workers:
            on_step(f"{self.spec.workers} Celery workers")
            workers = [
                service(f"worker-{i}", celery_worker_argv(PROJECT / "celery.yaml", f"worker-{i}"))
                for i in range(1, self.spec.workers + 1)
            ]
            self._wait(workers[0], lambda: workers_answer(self.env[BROKER_ENV], workers))

    def _wait(self, service: Service, ready: Callable[[], bool]) -> None:
        def probe() -> bool:
            if not service.running():
                last = next((ln for ln in reversed(service.log().splitlines()) if ln.strip()), "")
                raise ServerError(
                    f"{service.name} exited while starting ({last.strip() or 'no output'}); "
                    f"see {service.log_path}"
                )
            return ready()

        try:
            wait_for(f"{service.name} to answer", probe, START_TIMEOUT, 1.0)
        except TimeoutError as e:
            raise ServerError(f"{e}; see {service.log_path}") from None

    def _write_state(self) -> None:
        """stack.json: what runs where (URLs with passwords masked), for operators and tests."""
        state = {
            "supervisor": os.getpid(),
            "web_url": self.web_url,
            "dagster_home": str(self.dagster_home),
            "workspace": str(self.workspace),
            "services": {s.name: s.pid for s in self.services},
            "servers": {
                "postgres": self.postgres.url() if self.postgres else None,
                "redis": self.redis.url() if self.redis else None,
            },
            "candle_store": mask_url_password(self.env["CRYPTOTA_DATABASE_URL"]),
            "celery_broker": mask_url_password(self.env[BROKER_ENV]),
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")
        # What an operator's own dagster/cryptota commands need to reach this deployment; it may
        # hold the configured passwords, so only its owner can read it (like docker's .env).
        shared = ("DAGSTER_HOME", "CRYPTOTA_DATABASE_URL", "CRYPTOTA_REDIS_URL", BROKER_ENV)
        names = [*shared, *sorted(k for k in self.env if k.startswith("DAGSTER_PG_"))]
        lines = [f"{name}={shlex.quote(self.env[name])}" for name in names if name in self.env]
        lines.append(f"DAGSTER_WORKSPACE={shlex.quote(str(self.workspace))}")
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------ supervise, take down
    def failed(self) -> Service | None:
        """The first service that is no longer running, if any."""
        return next((s for s in self.services if not s.running()), None)

    def stop(self) -> None:
        """Every service newest first (workers, webserver, daemon, code server), then Redis and
        PostgreSQL. In-flight runs end with the code server; run monitoring marks them failed
        at the next start and run retries re-launch them (docs/operations.md)."""
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        self.state_file.unlink(missing_ok=True)


def workers_answer(broker_url: str, workers: list[Service]) -> bool:
    """True when every worker answers a ping through the broker (it is consuming)."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=1.0)
    finally:
        app.close()
    answered = {name.split("@", 1)[0] for reply in replies for name in reply}
    return answered >= {w.name for w in workers}


def run_until_signalled(stack: Stack, on_ready: Callable[[], None]) -> int:
    """Start ``stack``, wait for SIGTERM/SIGINT or a service dying, stop everything. Exit status:
    0 after a signal, 1 when a service died."""
    stop = threading.Event()
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stack.start()
        on_ready()
        died: Service | None = None
        while not stop.wait(1.0):
            died = stack.failed()
            if died is not None:
                break
        stack.stop()
        if died is not None:
            raise ServerError(
                f"{died.name} exited (status {died.process.returncode if died.process else '?'});"
                f" the stack was stopped. See {died.log_path}"
            )
        return 0
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
