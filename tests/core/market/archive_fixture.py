"""A local copy of data.binance.vision, built from candle frames.

Tests (here and elsewhere) write the months and days they need as zips with ``.CHECKSUM`` files,
exactly as the real archive lays them out, then point an
:class:`~cryptota_core.market.sources.archive.ArchiveSource` at ``archive_url(root)``
(``file://``) or at :func:`serve_archive` (a loopback HTTP server over the same tree, which can
also fail or stall chosen requests the way a real server does).

    url = write_archive(tmp_path, frame, "BTCUSDT", "1m", monthly=["2024-01"], daily=["2024-02-03"])
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cryptota_core.market.binance_csv import TimeUnit, write_kline_csv

Corruption = Literal["checksum", "zip", "csv"]


def archive_url(root: Path) -> str:
    """The ``file://`` base URL of an archive tree rooted at ``root``."""
    return root.resolve().as_uri()


def monthly_path(root: Path, symbol: str, interval: str, month: str) -> Path:
    """Where the archive keeps ``symbol``'s ``interval`` zip for ``month`` (``YYYY-MM``)."""
    return root / f"data/spot/monthly/klines/{symbol}/{interval}/{symbol}-{interval}-{month}.zip"


def daily_path(root: Path, symbol: str, interval: str, day: str) -> Path:
    """Where the archive keeps ``symbol``'s ``interval`` zip for ``day`` (``YYYY-MM-DD``)."""
    return root / f"data/spot/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{day}.zip"


def write_zip(
    path: Path,
    candles: pd.DataFrame,
    interval: str,
    *,
    time_unit: TimeUnit = "ms",
    header: bool = False,
    checksum: bool = True,
) -> Path:
    """Write ``candles`` as one kline CSV inside ``path`` (a zip), plus ``path.CHECKSUM``."""
    buffer = io.BytesIO()
    write_kline_csv(candles, buffer, interval=interval, header=header, time_unit=time_unit)
    _write_zip_bytes(path, path.name.removesuffix(".zip") + ".csv", buffer.getvalue())
    if checksum:
        write_checksum(path)
    return path


def write_checksum(path: Path, digest: str | None = None) -> Path:
    """Write ``path.CHECKSUM`` as the archive does: ``"<sha256 hex>  <file name>"``."""
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    target = path.with_name(path.name + ".CHECKSUM")
    target.write_text(f"{digest}  {path.name}\n")
    return target


def write_month(
    root: Path, frame: pd.DataFrame, symbol: str, interval: str, month: str, **options: Any
) -> Path:
    """Write the candles of ``frame`` falling in ``month`` as that month's monthly zip."""
    start = pd.Timestamp(month + "-01", tz="UTC")
    part = frame[(frame.index >= start) & (frame.index < start + pd.offsets.MonthBegin(1))]
    return write_zip(monthly_path(root, symbol, interval, month), part, interval, **options)


def write_day(
    root: Path, frame: pd.DataFrame, symbol: str, interval: str, day: str, **options: Any
) -> Path:
    """Write the candles of ``frame`` falling on ``day`` as that day's daily zip."""
    start = pd.Timestamp(day, tz="UTC")
    part = frame[(frame.index >= start) & (frame.index < start + pd.Timedelta(days=1))]
    return write_zip(daily_path(root, symbol, interval, day), part, interval, **options)


def write_archive(
    root: Path,
    frame: pd.DataFrame,
    symbol: str,
    interval: str,
    *,
    monthly: Iterable[str] | None = None,
    daily: Iterable[str] | None = None,
    time_unit: TimeUnit = "auto",
    header: bool = False,
    checksum: bool = True,
) -> str:
    """Lay ``frame`` out as an archive and return its ``file://`` URL.

    ``monthly`` lists the ``YYYY-MM`` months to write as monthly zips and ``daily`` the
    ``YYYY-MM-DD`` days to write as daily zips; with neither, every month of the frame becomes a
    monthly zip. ``time_unit="auto"`` writes µs from 2025 on, as the real spot archive does."""
    options: dict[str, Any] = {"time_unit": time_unit, "header": header, "checksum": checksum}
    if monthly is None and daily is None:
        monthly = sorted({f"{t:%Y-%m}" for t in frame.index})
    for month in monthly or ():
        write_month(root, frame, symbol, interval, month, **options)
    for day in daily or ():
        write_day(root, frame, symbol, interval, day, **options)
    return archive_url(root)


def corrupt(path: Path, how: Corruption) -> None:
    """Damage an archive zip the way real downloads go wrong.

    ``checksum``: the CHECKSUM names another hash. ``zip``: bytes of the zip change after its
    CHECKSUM was written (a truncated or altered download). ``csv``: the zip holds a malformed
    CSV, with a matching CHECKSUM, so only the CSV reader can notice."""
    if how == "checksum":
        write_checksum(path, hashlib.sha256(b"something else").hexdigest())
    elif how == "zip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "csv":
        _write_zip_bytes(
            path, path.name.removesuffix(".zip") + ".csv", b"1704067200000,1,2,3\nnot,a,kline\n"
        )
        write_checksum(path)
    else:
        raise ValueError(f"unknown corruption {how!r}")


def _write_zip_bytes(path: Path, member: str, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, content)


@dataclass
class ArchiveServer:
    """A running loopback server over an archive tree. ``requests`` records every path asked
    for, in order, so tests can assert which files were (not) fetched and how often."""

    url: str
    requests: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    fail_status: int = 500


@contextmanager
def serve_archive(
    root: Path,
    *,
    fail: Mapping[str, int] | None = None,
    fail_status: int = 500,
    stall: Mapping[str, float] | None = None,
) -> Iterator[ArchiveServer]:
    """Serve ``root`` over HTTP on 127.0.0.1 (missing files are 404, as on the real archive).

    ``fail`` maps a URL path (``/data/spot/...zip``) to how many of its first requests answer
    ``fail_status``; ``stall`` maps a path to seconds its first request sleeps before answering,
    to provoke a client timeout."""
    server_state = ArchiveServer(url="", fail=dict(fail or {}), stall=dict(stall or {}))
    server_state.fail_status = fail_status
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            with lock:
                server_state.requests.append(self.path)
                failures = server_state.fail.get(self.path, 0)
                if failures:
                    server_state.fail[self.path] = failures - 1
                delay = server_state.stall.pop(self.path, 0.0)
            if delay:
                time.sleep(delay)
            if failures:
                self.send_error(server_state.fail_status)
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
