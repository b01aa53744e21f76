"""The Celery executor: steps of a run executed by Celery workers on other machines.

The run's orchestrator (wherever the run launcher starts it) submits each step as a Celery task
to the broker (``CRYPTOTA_CELERY_BROKER_URL``, a Redis database); a worker started with
``dagster-celery worker start -A dagster_celery.app -y celery.yaml`` picks it up, rebuilds the
job from the code location, runs the step against the shared Dagster instance and stores the
step's events in the result backend (the same Redis). Every step event also lands in the
instance, so the run's page in the UI shows which worker ran what (the "Executing steps ... in
celery worker" events carry the worker's name).

Both sides must agree on the broker and on how tasks are acknowledged: the workers read
``celery.yaml`` at the repository root, whose ``execution.config`` block is
:data:`CELERY_EXECUTOR_CONFIG` (a test holds the two equal).

What happens to a step whose worker dies (docs/operations.md):

- the process running the step is killed (the OOM killer, a SIGKILL): with late
  acknowledgement and ``task_reject_on_worker_lost`` the worker puts the task back on the queue
  at once and a worker runs the step again;
- the whole worker (its machine) is lost: the task was never acknowledged, so once the broker's
  ``visibility_timeout`` has passed a live worker takes it back and runs the step again. The
  timeout must exceed the longest step, or a slow step is handed out twice.

A step's writes are idempotent per partition, each partition's in one transaction, so a step run
again leaves exactly one copy of every result and a killed one leaves no partial result.
"""

from __future__ import annotations

from typing import Any

from dagster import ExecutorDefinition
from dagster_celery import celery_executor

BROKER_ENV = "CRYPTOTA_CELERY_BROKER_URL"
"""The broker's URL enters as an environment variable, never as a value in the job's config: it
may hold a password, and the UI shows config."""

VISIBILITY_TIMEOUT_SECONDS = 6 * 3600
"""How long an unacknowledged step stays with a worker before the broker hands it to another:
longer than any step (a large sweep runs for minutes, not hours), so only a lost worker's steps
are handed out again."""

CELERY_EXECUTOR_CONFIG: dict[str, Any] = {
    "broker": {"env": BROKER_ENV},
    "backend": {"env": BROKER_ENV},
    "config_source": {
        # Acknowledge a step when it ends, not when a worker receives it: a worker that dies
        # mid-step leaves its task on the broker for another worker.
        "task_acks_late": True,
        # ...and a step whose process was killed goes back on the queue at once.
        "task_reject_on_worker_lost": True,
        # One step per worker process at a time: a busy worker holds no queued steps back.
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            # dagster-celery's own defaults: a few quick retries when publishing a task.
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Workers emit task events, so Flower (optional, docs/operations.md) can follow them.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    },
}
"""The executor's configuration, and the ``execution.config`` of ``celery.yaml`` for the
workers."""

cryptota_celery_executor: ExecutorDefinition = celery_executor.configured(
    CELERY_EXECUTOR_CONFIG, name="cryptota_celery_executor"
)
"""``dagster_celery``'s executor on our broker with late acknowledgement."""
