"""``cryptota stack``: the production deployment on one machine without Docker (PostgreSQL,
Redis, user-code server, daemon, webserver, Celery workers), with a clean shutdown on SIGTERM."""
