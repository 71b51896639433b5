"""Keeping credentials out of what people see: logs, dry runs and reprs show URLs with their
passwords masked, and webhook targets as their origin only (a webhook URL's path is often
its secret, as Slack's are). Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def url_password(url: str) -> str | None:
    """The password in a URL's user info (`redis://:pw@host/0`), or None."""
    try:
        return urlsplit(url).password
    except ValueError:  # not a URL (an invalid port, brackets): nothing to find
        return None


def redact_url(url: str) -> str:
    """The URL with its password masked: `redis://u:pw@host:6379/0` -> `redis://u:***@host:6379/0`."""
    if not url_password(url):
        return url
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:{MASK}@{host}"))


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, without user info, path or query: what a log may say
    about a webhook."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if ":" in host:  # an IPv6 address, bracketed as in the URL
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else MASK


def redact_env(variables: Mapping[str, str]) -> dict[str, str]:
    """An environment with the passwords in its URL values masked (for a dry run)."""
    return {name: redact_url(value) for name, value in variables.items()}
