"""Keep secrets out of everything managerctl prints or logs."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host, for any URL inside any text.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s,]*:)(?P<password>[^\s,]*)@")
# host lists of multi-host URLs: ",user:password@host2"
_LIST_PASSWORD = re.compile(r"(?P<head>,[^:/@\s,]*:)(?P<password>[^\s,]*)@")

MASK = "***"


def mask_url_passwords(text: str) -> str:
    """Replace every password of a URL (including each host of a multi-host URL) with ***."""
    if "@" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    return _LIST_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


# A key naming a secret, anywhere in the name and in any case: password, auth_token,
# _context_auth_token_info, service_token, secret_key, api_key, private_key, credentials...
_SECRET_KEY = re.compile(r"pass(?:word|wd|phrase)|token|secret|key|credential", re.IGNORECASE)


def is_secret_key(name: object) -> bool:
    """True for a mapping key whose value must never be shown."""
    return isinstance(name, str) and _SECRET_KEY.search(name) is not None


def mask_secrets(value: object, *, _depth: int = 0) -> object:
    """A copy of ``value`` (JSON-like data) safe to show: the value of every key that names a
    secret becomes ``***`` however deep it sits, and URL passwords inside strings are masked."""
    if _depth > 64:  # hostile nesting: show nothing rather than recurse without end
        return MASK
    if isinstance(value, str):
        return mask_url_passwords(value)
    if isinstance(value, dict):
        return {
            key: (
                MASK
                if is_secret_key(key) and item not in (None, "")
                else mask_secrets(item, _depth=_depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item, _depth=_depth + 1) for item in value]
    return value
