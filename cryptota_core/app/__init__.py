"""The use cases: where stores meet engines (ingest, run-and-store a backtest, optimise- and
walk-forward-and-store, signals, drift). Above the domain and the stores, below the CLI and the
Dagster assets, so the domain never imports storage (DESIGN §2)."""
