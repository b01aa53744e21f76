"""The core's log records inside Dagster: their format, and the run they belong to.

Installed once per process, when the code location's resources are built from the settings
(:func:`~cryptota_pipelines.resources.resources_from_settings`; every process that runs a step
loads the code location first: run workers, step subprocesses, Celery workers). From then on each
``cryptota_core`` record is stamped with the run id of the Dagster step executing at that moment,
looked up from Dagster's current execution context. No asset, check or op has to request
anything for it, so none can forget, and a record logged after a step ends belongs to no run.
"""

from dagster import DagsterInvariantViolationError, OpExecutionContext

from cryptota_core.logs import configure_logging, use_run_id_source


def step_run_id() -> str | None:
    """The run id of the op or asset step executing in this context, None outside one."""
    try:
        return OpExecutionContext.get().run_id
    except DagsterInvariantViolationError:
        return None


def install_run_logging(log_level: str, log_format: str) -> None:
    """Route the core's records to stderr as console or JSON lines, each with its step's run
    id (idempotent)."""
    configure_logging(log_level, log_format)
    use_run_id_source(step_run_id)
