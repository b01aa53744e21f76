"""The one URL-password masker: what every log line, label and error shows of a URL."""

from __future__ import annotations

import pytest

from cryptota_core.redact import mask_url_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://cryptota:s3cret@db:5432/cryptota",
            "postgresql+psycopg://cryptota:***@db:5432/cryptota",
        ),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://user:p%40ss:word@cache/1?ssl=true", "redis://user:***@cache/1?ssl=true"),
        ("mysql://admin:pw@[::1]:3306/prod", "mysql://admin:***@[::1]:3306/prod"),
    ],
    ids=["postgres", "redis-no-user", "encoded-and-colon", "ipv6"],
)
def test_the_password_is_masked_and_the_rest_kept(url: str, shown: str) -> None:
    assert mask_url_password(url) == shown


@pytest.mark.parametrize(
    "url",
    ["sqlite:////home/me/.cryptota/cryptota.db", "redis://cache:6379/0", "redis://user@cache/0"],
)
def test_a_url_without_password_is_unchanged(url: str) -> None:
    assert mask_url_password(url) == url


def test_an_unparseable_url_is_masked_by_pattern() -> None:
    """A value rejected because it does not parse still never echoes its password."""
    shown = mask_url_password("postgresql://admin:s3cret@[db:5432/x")
    assert "s3cret" not in shown and "admin:***@" in shown
