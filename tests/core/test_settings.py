"""Settings: every variable is documented in .env.example, and bad values are one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cryptota_core.errors import ConfigError
from cryptota_core.settings import _ENV_NAMES, Settings, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    expected = {_ENV_NAMES.get(name, f"CRYPTOTA_{name.upper()}") for name in Settings.model_fields}
    assert expected <= documented, sorted(expected - documented)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CRYPTOTA_INTERVAL", "7m", "CRYPTOTA_INTERVAL='7m' is invalid: unknown interval '7m'"),
        ("CRYPTOTA_SYMBOLS", "BTC-USDT", "CRYPTOTA_SYMBOLS='BTC-USDT' is invalid"),
        ("CRYPTOTA_SOURCE", "kraken", "CRYPTOTA_SOURCE='kraken' is invalid"),
        ("CRYPTOTA_DATABASE_URL", "mysql://x", "CRYPTOTA_DATABASE_URL='mysql://x' is invalid"),
        ("CRYPTOTA_REDIS_URL", "localhost:6379", "CRYPTOTA_REDIS_URL='localhost:6379' is invalid"),
        ("BINANCE_BASE_URL", "api.binance.com", "BINANCE_BASE_URL='api.binance.com' is invalid"),
        ("CRYPTOTA_BACKTEST_DAYS", "0", "CRYPTOTA_BACKTEST_DAYS='0' is invalid"),
        ("CRYPTOTA_STRATEGY_GRIDS", "{oops", "CRYPTOTA_STRATEGY_GRIDS is not valid JSON"),
    ],
)
def test_bad_values_fail_at_start_up_naming_the_variable(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_are_the_embedded_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'cryptota.db'}"
    assert settings.resolved_dagster_home == tmp_path / "dagster"
    assert settings.redis_url is None
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.binance_api_key is None


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", "key-123456")
    monkeypatch.setenv("BINANCE_API_SECRET", "secret-abcdef")
    settings = load_settings()
    assert settings.binance_api_secret is not None
    assert settings.binance_api_secret.get_secret_value() == "secret-abcdef"
    assert "secret-abcdef" not in repr(settings) and "key-123456" not in repr(settings)


def test_a_rejected_url_does_not_echo_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", "mysql://admin:hunter2@db/prod")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
    assert "mysql://admin:***@db/prod" in str(info.value)
