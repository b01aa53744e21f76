"""Sensors of the backtest domain.

``param_set_sensor``: the ``param_sets`` partitions follow ``CRYPTOTA_STRATEGY_GRIDS``. Its cursor
is a hash of the grids, so it acts once per change: it registers every parameter set of the grids
in the results store (``backtest_runs`` resolves slugs there) and adds the slugs that have no
partition yet. Slugs that left the grids keep their partitions and stored results.

``reoptimization_sensor``: after ``reoptimize_after_days`` new days of a symbol's candles inside
the backtest window, one run re-backtests every parameter set of that symbol and re-ranks. It
reads the instance's ``candles_1m`` materialisations after the last storage id it saw (the
cursor), so each new batch of candles triggers once; days are counted per symbol until enough
have come in.
"""

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from dagster import (
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cryptota_core.app.backtests import register_param_sets
from cryptota_pipelines.partitions import (
    PARAM_SETS_PARTITIONS,
    param_set_partitions,
)
from cryptota_pipelines.resources import BacktestConfigResource, ResultsStoreResource


def grids_digest(grids: Mapping[str, Any]) -> str:
    """A short, order-independent fingerprint of the strategy grids."""
    canonical = json.dumps(grids, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@sensor(
    name="param_set_sensor",
    minimum_interval_seconds=60,
    description="Registers the parameter sets of CRYPTOTA_STRATEGY_GRIDS and adds their param_sets "
    "partitions, once per change of the grids.",
)
def param_set_sensor(
    context: SensorEvaluationContext,
    results_store: ResultsStoreResource,
    backtest_config: BacktestConfigResource,
) -> SensorResult | SkipReason:
    """Act once per change of the grids: register every set, add the missing partitions."""
    digest = grids_digest(backtest_config.strategy_grids)
    if context.cursor == digest:
        return SkipReason(f"strategy grids unchanged ({digest})")
    slugs = register_param_sets(results_store.store(), backtest_config.param_sets())
    existing = set(context.instance.get_dynamic_partitions(PARAM_SETS_PARTITIONS))
    added = [slug for slug in slugs if slug not in existing]
    context.log.info(f"grids {digest}: {len(slugs)} parameter sets, {len(added)} new partitions")
    requests = [param_set_partitions.build_add_request(added)] if added else []
    return SensorResult(dynamic_partitions_requests=requests, cursor=digest)
