"""Research: parameter optimisation, walk-forward and trading signals per symbol (``assets.py``),
the weekly walk-forward and its job (``schedules.py``), the re-optimisation and drift sensors and
their job (``sensors.py``)."""
