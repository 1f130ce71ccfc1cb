"""One time format in every view: ISO 8601 in UTC, to the second, with ``Z``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import manager_cli
from manager_cli.cli.periodic import _run_row, _task_row
from manager_cli.cli.services import service_rows
from manager_cli.timefmt import iso_utc, iso_utc_or_as_is

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PACKAGE_DIR = Path(manager_cli.__file__).parent
# The wire keeps oslo's own datetime format (jsonutils), which is not a view.
FORMAT_OWNERS = {"timefmt.py", "rpc/wire.py"}


def test_iso_utc():
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_utc(1779283440.987) == "2026-05-20T13:24:00Z"


def test_iso_utc_or_as_is_leaves_what_is_no_time():
    assert iso_utc_or_as_is(None) is None
    assert iso_utc_or_as_is(True) is True
    assert iso_utc_or_as_is("never") == "never"
    assert iso_utc_or_as_is(60) == "1970-01-01T00:01:00Z"


def test_services_list_times():
    record = {"service": "s", "host": "h", "updated_at": 1779283440.5, "started": 1779283000}
    (row,) = service_rows([record], now=1779283441.0, service_down_time=60)
    assert ISO_Z.match(row["updated_at"]) and ISO_Z.match(row["started"])


def test_periodic_list_times():
    assert ISO_Z.match(_task_row({"name": "t", "last_run": 1779283440.25})["last_run"])
    assert _task_row({"name": "t", "last_run": None})["last_run"] is None
    assert ISO_Z.match(_run_row({"task": "t", "started": 1779283440.25})["started"])


def test_no_other_module_formats_times():
    """A second ISO formatter (an ``isoformat()`` call) would bring the two spellings back.

    (``strftime`` stays free for what is no data: a watch title's clock, a plot's axis.)"""
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if relative in FORMAT_OWNERS:
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            called = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if called and node.func.attr == "isoformat":
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
