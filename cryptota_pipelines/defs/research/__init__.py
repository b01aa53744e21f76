"""Research: parameter optimisation, walk-forward and trading signals per symbol (``assets.py``),
their jobs, the weekly walk-forward and the re-optimisation and drift sensors
(``automation.py``)."""
