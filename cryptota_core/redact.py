"""Secrets out of what people read: the one URL-password masker (DESIGN §8: secrets never appear
in logs, metadata or errors).

Database, Redis and broker URLs carry their password in the userinfo part
(``scheme://user:password@host``). Every log line, error message or label that shows such a URL
shows it through :func:`mask_url_password`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
"""What stands where the password was."""

_USERINFO_PASSWORD = re.compile(r"(//[^:/@]*:)[^/@]*@")


def mask_url_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (user, host, port, path, query kept).

    A string that does not even parse as a URL (a bad port, an unbalanced IPv6 bracket — exactly
    what a rejected setting can hold) is masked by pattern instead, so the password never
    slips through an error message about that very value."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO_PASSWORD.sub(rf"\g<1>{MASK}@", url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))
