"""dagster.yaml, workspace.yaml and docker-compose.yml agree with each other and with Dagster 1.13's
instance schema (the end-to-end tests run the same dagster.yaml for real)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from cryptota_pipelines.stack.processes import LOCATION_NAME, code_server_argv
from tests.pipelines.deployment import REPO

DAGSTER_SERVICES = ("user-code", "webserver", "daemon", "worker")
"""Services of the project's image: each needs the instance (dagster.yaml's variables)."""


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_dagster_yaml_is_a_valid_1_13_instance_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    for name in re.findall(r"env: (\w+)", (REPO / "deploy" / "dagster.yaml").read_text()):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    config, _ = dagster_instance_config(str(tmp_path))

    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0
    assert config["concurrency"]["pools"]["default_limit"] > 0
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert "cryptota_core" in config["python_logs"]["managed_python_loggers"]


def test_compose_runs_every_service_with_a_health_check() -> None:
    services = _compose()["services"]
    assert set(services) == {"timescaledb", "dagster-postgres", "redis", *DAGSTER_SERVICES}
    assert services["timescaledb"]["image"] == "timescale/timescaledb:latest-pg15"
    assert services["dagster-postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert all("healthcheck" in service for service in services.values())
    instance = (REPO / "deploy" / "dagster.yaml").read_text()
    dagster_yaml_vars = set(re.findall(r"env: (\w+)", instance))
    for name in DAGSTER_SERVICES:
        assert dagster_yaml_vars <= set(services[name]["environment"]), name
        assert services[name]["env_file"] == ".env"


def test_celery_workers_scale_and_share_the_broker_with_the_runs() -> None:
    """`docker compose up --scale worker=N`: no fixed name or host port; the workers start with
    celery.yaml (copied into the image) and use the broker the run workers submit steps to."""
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    command = worker["command"]
    assert command[:3] == ["dagster-celery", "worker", "start"]
    assert command[command.index("-A") + 1] == "dagster_celery.app"
    config = command[command.index("-y") + 1]
    assert config == "/opt/dagster/app/celery.yaml"
    assert "COPY celery.yaml ./celery.yaml" in (REPO / "Dockerfile").read_text()
    assert "WORKDIR /opt/dagster/app" in (REPO / "Dockerfile").read_text()
    broker = worker["environment"]["CRYPTOTA_CELERY_BROKER_URL"]
    assert broker.startswith("redis://redis:6379/")
    assert broker != worker["environment"]["CRYPTOTA_REDIS_URL"]  # not the cache's database
    assert services["user-code"]["environment"]["CRYPTOTA_CELERY_BROKER_URL"] == broker
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])


def test_workspace_points_at_the_user_code_server_compose_starts() -> None:
    (location,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    server = location["grpc_server"]
    command = _compose()["services"]["user-code"]["command"]
    assert server["host"] == "user-code" and server["location_name"] == "cryptota_pipelines"
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("-m") + 1] == "cryptota_pipelines.definitions"
    # One name everywhere: the workspace, the code server, the image's default command, [tool.dg]
    # and the stack (no "does not match the name" warnings in the webserver and daemon).
    assert command[command.index("--location-name") + 1] == LOCATION_NAME
    dockerfile_cmd = (REPO / "Dockerfile").read_text().split("\nCMD ")[-1]
    assert f'"--location-name", "{LOCATION_NAME}"' in dockerfile_cmd
    dg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert dg["code_location_name"] == server["location_name"] == LOCATION_NAME
    assert code_server_argv(4000)[-3:-1] == ["--location-name", LOCATION_NAME]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker-compose config` (Debian's docker-compose; no Docker engine needed) validates the
    file as compose itself reads it, with .env.example as the .env and the required passwords
    set; without them it refuses, naming the variable."""
    import os
    import subprocess

    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install docker-compose (.ci/run does)"
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PASSWORD")}
    refused = subprocess.run(
        [binary, "config", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "set CRYPTOTA_DB_PASSWORD in .env" in refused.stderr + refused.stdout
    env |= {"CRYPTOTA_DB_PASSWORD": "store-secret", "DAGSTER_PG_PASSWORD": "dagster-secret"}
    accepted = subprocess.run(
        [binary, "config"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert accepted.returncode == 0, accepted.stderr
    services = yaml.safe_load(accepted.stdout)["services"]
    assert set(services) == {"timescaledb", "dagster-postgres", "redis", *DAGSTER_SERVICES}
    assert all("healthcheck" in service for service in services.values())
    # The scalable worker: no fixed name, no host port, the broker from the shared environment.
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"]["CRYPTOTA_CELERY_BROKER_URL"] == "redis://redis:6379/1"
