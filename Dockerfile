# One image for the three Dagster processes (user-code gRPC server, webserver, daemon) and the
# Celery workers; the docker-compose.yml services differ only in their command. Run workers are
# started by the user-code server (DefaultRunLauncher), so they run in this image too.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    CRYPTOTA_HOME=/opt/dagster/cryptota \
    NUMBA_CACHE_DIR=/opt/dagster/numba-cache

RUN groupadd --system dagster && useradd --system --gid dagster --home-dir /opt/dagster dagster

WORKDIR /opt/dagster/app

# Dependencies first (cached while only the code changes), then the code itself.
COPY pyproject.toml README.md ./
COPY cryptota_core ./cryptota_core
COPY cryptota_pipelines ./cryptota_pipelines
RUN pip install .

# The instance config (storage, run queue, pools, monitoring) and where to find the user code.
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY workspace.yaml ./workspace.yaml
# What the Celery workers start with (`dagster-celery worker start -y celery.yaml`).
COPY celery.yaml ./celery.yaml
RUN mkdir -p ${DAGSTER_HOME}/storage ${CRYPTOTA_HOME} ${NUMBA_CACHE_DIR} \
    && chown -R dagster:dagster /opt/dagster

USER dagster

EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "cryptota_pipelines.definitions", "--location-name", "cryptota_pipelines"]
