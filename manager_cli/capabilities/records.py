"""Capability records and the pure functions over them: flatten, diff, rows and columns.

What the collector keeps and ``capabilities`` shows, without any database or transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..timefmt import iso_utc

__all__ = [
    "DEFAULT_STALE_AFTER",
    "ROW_COLUMNS",
    "SHADOW_PREFIX",
    "CapabilityRecord",
    "Change",
    "FlatRecord",
    "canonical",
    "compact_json",
    "capability_columns",
    "capability_rows",
    "diff_capabilities",
    "diff_flat",
    "diff_from_text",
    "diff_text",
    "flatten",
    "flatten_capabilities",
    "iso_time",
    "key_series",
    "pool_name",
    "same_value",
]

# A service publishes every 60 s by default (periodic spacing); three missed publications make
# its record stale, so one late run (fuzzy delay, a slow task) never flags a healthy host.
DEFAULT_STALE_AFTER = 180.0


# The fixed columns of a capability row; capability keys follow them.
ROW_COLUMNS: tuple[str, ...] = ("service", "host", "state", "age_s", "received_at")
# A capability key that would shadow a fixed column is shown under this prefix.
SHADOW_PREFIX = "capabilities."
# The keys an operator reads first, in this order: a table too narrow for every key keeps these
# (columns are left out from the right). What cinder's capacity filter and weigher read of a
# pool, what nova's host state holds, what hostinfo gathers.
HEADLINE_KEYS: tuple[str, ...] = (
    "pools.free_capacity_gb",
    "pools.total_capacity_gb",
    "pools.allocated_capacity_gb",
    "pools.provisioned_capacity_gb",
    "pools.max_over_subscription_ratio",
    "pools.reserved_percentage",
    "free_capacity_gb",
    "total_capacity_gb",
    "vcpus",
    "vcpus_used",
    "free_ram_mb",
    "memory_mb",
    "free_disk_gb",
    "local_gb",
    "running_vms",
    "load.1m",
    "cpu_count",
    "memory_available_mb",
    "disk_free_gb",
)
# What names an item of a list-of-dict capability in its row's host (cinder: host@backend#pool).
POOL_NAME_KEYS: tuple[str, ...] = ("pool_name", "name")


# ---------------------------------------------------------------------------
# Records and pure functions


@dataclass(frozen=True)
class CapabilityRecord:
    """The last capabilities one service on one host published, and when they arrived."""

    service: str
    host: str
    capabilities: list[Any]
    received_at: float

    @property
    def flat(self) -> dict[str, Any]:
        """The capabilities as dotted keys (flatten_capabilities)."""
        return flatten_capabilities(self.capabilities)


@dataclass(frozen=True)
class FlatRecord:
    """A CapabilityRecord with its capabilities already flattened, as a table shows them (the
    store keeps them so: a big store's view need not flatten each host again)."""

    service: str
    host: str
    flat: dict[str, Any]
    received_at: float

    @classmethod
    def of(cls, record: CapabilityRecord) -> FlatRecord:
        return cls(record.service, record.host, record.flat, record.received_at)


@dataclass(frozen=True)
class Change:
    """One change of a service's capabilities: what was added, removed or changed, and when.

    ``diff`` is ``{"added": {key: new}, "removed": {key: old}, "changed": {key: {"old", "new"}}}``
    over flattened (dotted) keys.
    """

    service: str
    host: str
    received_at: float
    diff: dict[str, dict[str, Any]] = field(default_factory=dict)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"load": {"1m": 0.5}} -> {"load.1m": 0.5}.

    Lists and empty dicts are kept as values; a value that is not a dict becomes
    ``{prefix or "value": value}``.
    """
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    _flatten_into(flat, value, f"{prefix}." if prefix else "")
    return flat


def _flatten_into(flat: dict[str, Any], value: Mapping[Any, Any], dotted: str) -> None:
    # One dict filled in place, keys built once: flatten runs for every update and row.
    for key, item in value.items():
        if isinstance(item, dict) and item:
            _flatten_into(flat, item, f"{dotted}{key}.")
        else:
            flat[f"{dotted}{key}"] = item


def flatten_capabilities(capabilities: Sequence[Any]) -> dict[str, Any]:
    """A published capability list as dotted keys.

    Services almost always publish one dict, whose keys are used as they are; several items
    are told apart by their index (``0.cpu_count``, ``1.cpu_count``).
    """
    if not capabilities:
        return {}
    if len(capabilities) == 1:
        return flatten(capabilities[0])
    flat: dict[str, Any] = {}
    for index, item in enumerate(capabilities):
        flat.update(flatten(item, str(index)))
    return flat


# Built once: json.dumps builds an encoder per call when given options, and these run for every
# update the collector takes.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str).encode


def compact_json(value: Any) -> str:
    """JSON without spaces, keys in their order (what the store keeps)."""
    return _COMPACT(value)


def canonical(value: Any) -> str:
    # Compared as canonical JSON, not with ==: 1 == True == 1.0 in Python, not to an operator.
    return _CANONICAL(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def same_value(a: Any, b: Any) -> bool:
    """Whether two values read the same as canonical JSON, without encoding the common case:
    scalars of one type compare with == (1, True and 1.0 differ, as their JSON does)."""
    kind = type(a)
    if kind is type(b) and kind in _SCALARS:
        return bool(a == b) or (kind is float and a != a and b != b)  # NaN is NaN
    if kind in _SCALARS or type(b) in _SCALARS:
        return False
    return canonical(a) == canonical(b)


def diff_capabilities(old: Sequence[Any] | None, new: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """What changed from ``old`` to ``new``, on flattened keys (``old`` None: all added)."""
    return diff_flat(flatten_capabilities(old or []), flatten_capabilities(new))


def diff_flat(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """diff_capabilities on capabilities already flattened."""
    added = {key: value for key, value in after.items() if key not in before}
    removed = {key: value for key, value in before.items() if key not in after}
    changed = {
        key: {"old": before[key], "new": value}
        for key, value in after.items()
        if key in before and not same_value(before[key], value)
    }
    return {"added": added, "removed": removed, "changed": changed}


_DIFF_SECTIONS = ("added", "removed", "changed")


def diff_text(diff: Mapping[str, Mapping[str, Any]]) -> str:
    """A diff as stored: compact JSON without its empty sections (most changes touch one or
    two keys, and a history row is mostly its diff)."""
    kept = {section: diff[section] for section in _DIFF_SECTIONS if diff.get(section)}
    return _COMPACT(kept)


def diff_from_text(text: str) -> dict[str, dict[str, Any]]:
    """A stored diff with all three sections again (older stores kept the empty ones)."""
    stored = json.loads(text)
    return {section: stored.get(section) or {} for section in _DIFF_SECTIONS}


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second: ``2026-05-20T13:24:00Z``."""
    return iso_utc(timestamp)


def pool_name(item: Mapping[str, Any], index: int) -> str:
    """The name of one item of a list-of-dict capability: cinder's ``pool_name``, else
    ``name``, else its index."""
    for key in POOL_NAME_KEYS:
        value = item.get(key)
        if value not in (None, ""):
            return str(value)
    return str(index)


_FIXED = frozenset(ROW_COLUMNS)


def _pooled_key(flat: Mapping[str, Any]) -> str | None:
    """The one key whose value is a non-empty list of dicts (cinder's ``pools``), if one."""
    if list not in set(map(type, flat.values())):
        return None
    found = [
        key
        for key, value in flat.items()
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
    ]
    return found[0] if len(found) == 1 else None


class _SecondStamps:
    """iso_time, remembered per second: a big store's records arrived within a few minutes of
    each other, and formatting a datetime per row costs more than the rest of the row."""

    def __init__(self) -> None:
        self._seen: dict[int, str] = {}

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        if timestamp < 0 or timestamp - second > 0.999999:  # rounding may reach the next second
            return iso_time(timestamp)
        stamp = self._seen.get(second)
        if stamp is None:
            stamp = self._seen[second] = iso_time(second)
        return stamp


def capability_rows(
    records: Iterable[CapabilityRecord | FlatRecord], now: float, stale_after: float
) -> list[dict[str, Any]]:
    """One row per (service, host): the fixed columns, then each capability key as a column.

    ``state`` is ``"stale"`` when the record is older than ``stale_after`` seconds, else
    ``"fresh"``; ``age_s`` is its age in seconds, ``received_at`` when it arrived (ISO 8601, UTC).

    A record with one list-of-dict capability (cinder's ``pools``) gives one row per item, as
    cinder names pools: host ``host@backend#pool``, the item's keys as ``pools.<key>`` columns
    (``pools.total_capacity_gb``), the record's other keys repeated on each row.
    """
    rows = []
    stamp_of = _SecondStamps()
    for record in records:
        received = record.received_at
        age = now - received
        if age < 0.0:
            age = 0.0
        row: dict[str, Any] = {
            "service": record.service,
            "host": record.host,
            "state": "stale" if age > stale_after else "fresh",
            "age_s": round(age, 1),
            "received_at": stamp_of(received),
        }
        flat = record.flat
        pooled = _pooled_key(flat)
        if pooled is None and _FIXED.isdisjoint(flat):
            # The common case, in one C-level update (100,000 hosts: seconds saved).
            row.update(flat)
            rows.append(row)
            continue
        for key, value in flat.items():
            if key != pooled:
                row[SHADOW_PREFIX + key if key in ROW_COLUMNS else key] = value
        if pooled is None:
            rows.append(row)
            continue
        for index, item in enumerate(flat[pooled]):
            pool_row = dict(row)
            pool_row["host"] = f"{record.host}#{pool_name(item, index)}"
            pool_row.update(flatten(item, pooled))
            rows.append(pool_row)
    return rows


def capability_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The fixed columns, then the headline keys present (HEADLINE_KEYS: the numbers a
    scheduler decides by, so they are what a narrow table keeps), then the keys of per-pool
    rows (``pools.*``: what tells pools apart), then every other capability key, each group
    in sorted order."""
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    keys.difference_update(ROW_COLUMNS)
    headline = [key for key in HEADLINE_KEYS if key in keys]
    keys.difference_update(headline)
    pooled = {
        key.rsplit(".", 1)[0]
        for key in keys
        if "." in key and key.rsplit(".", 1)[1] in POOL_NAME_KEYS
    }
    first = sorted(k for k in keys if k.split(".", 1)[0] in pooled)
    return list(ROW_COLUMNS) + headline + first + sorted(keys.difference(first))


def key_series(changes: Iterable[Change], key: str) -> dict[str, list[tuple[float, Any]]]:
    """The values ``key`` took, per service, from a host's changes (oldest first): a point at
    each change that added or changed it (None where it was removed). Between two points the
    value did not change: the history keeps changes only."""
    series: dict[str, list[tuple[float, Any]]] = {}
    for change in changes:
        diff = change.diff
        if key in diff.get("added", {}):
            value = diff["added"][key]
        elif key in diff.get("changed", {}):
            value = diff["changed"][key].get("new")
        elif key in diff.get("removed", {}):
            value = None
        else:
            continue
        series.setdefault(change.service, []).append((change.received_at, value))
    return series
