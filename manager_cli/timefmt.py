"""The one time format of managerctl's views: ISO 8601 in UTC, to the second, with ``Z``.

Every JSON (and table) view shows a moment as ``2026-05-20T13:24:00Z``: one spelling that
``date -d``, jq's ``fromdateiso8601`` and every ISO parser read, never ``+00:00`` in one view and
``Z`` in the next. The wire keeps oslo's own format (``wire.to_primitive``).
"""

from __future__ import annotations

import datetime
from typing import Any


def iso_utc(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second: ``2026-05-20T13:24:00Z``."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_ms(timestamp: float) -> str:
    """The same to the millisecond, for views of single messages (``tap``): ``...:00.123Z``."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_utc_or_as_is(value: Any) -> Any:
    """``iso_utc`` of a number (epoch seconds); anything else (None, text) unchanged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_utc(value)
    return value
