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
