"""Tests for manager_cli.cli.output: one renderer, five formats, colour only on a TTY."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import yaml

from manager_cli.cli.output import OutputOptions, render_list, render_one, text_value
from manager_cli.errors import EXIT_USAGE, UnknownNameError

RECORDS = [
    {"task_name": "gather_cpu", "outcome": "ok", "duration": 0.25, "last_error": None},
    {"task_name": "gather_disk", "outcome": "failed", "duration": 1.5, "last_error": "OSError"},
    {"task_name": "beat", "outcome": "ok", "duration": 0.0, "last_error": None},
]
COLUMNS = ["task_name", "outcome", "duration", "last_error"]

ANSI = "\x1b"


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def render(records=RECORDS, columns=COLUMNS, **options) -> str:
    stream = options.pop("stream", None) or io.StringIO()
    render_list(records, columns, OutputOptions(stream=stream, **options))
    return stream.getvalue()


@pytest.fixture
def colour_terminal(monkeypatch):
    """An environment in which Rich would colour a terminal."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")


# ---------------------------------------------------------------------------
# Formats


def test_json_parses_and_keeps_snake_case_keys():
    data = json.loads(render(format="json"))
    assert data == RECORDS
    assert list(data[0]) == COLUMNS


def test_json_is_stable_for_extra_keys_not_in_the_default_columns():
    records = [{"name": "a", "extra_field": 1}]
    assert json.loads(render(records, ["name"], format="json")) == [{"name": "a"}]


def test_csv_parses_with_the_csv_module():
    rows = list(csv.reader(io.StringIO(render(format="csv"))))
    assert rows[0] == COLUMNS
    assert rows[1] == ["gather_cpu", "ok", "0.25", ""]
    assert rows[2] == ["gather_disk", "failed", "1.5", "OSError"]
    assert len(rows) == 4


def test_csv_quotes_values_with_commas():
    records = [{"name": "a,b", "value": 'say "hi"'}]
    rows = list(csv.reader(io.StringIO(render(records, ["name", "value"], format="csv"))))
    assert rows[1] == ["a,b", 'say "hi"']


def test_value_prints_values_without_a_header():
    lines = render(format="value", columns=["task_name", "outcome"]).splitlines()
    assert lines == ["gather_cpu ok", "gather_disk failed", "beat ok"]


def test_yaml_parses_with_safe_load():
    assert yaml.safe_load(render(format="yaml")) == RECORDS


def test_plain_table_when_not_a_tty_has_no_ansi():
    text = render(format="table")
    assert ANSI not in text
    lines = text.splitlines()
    assert lines[0].split() == COLUMNS
    assert lines[2].split() == ["gather_disk", "failed", "1.50s", "OSError"]
    assert len(lines) == 4


def test_plain_table_colour_is_off_even_with_colour_allowed(colour_terminal):
    assert ANSI not in render(format="table", stream=io.StringIO())


def test_nested_values_are_compact_json_in_text_formats():
    records = [{"name": "a", "load": {"5m": 2, "1m": 1}, "tags": ["x", "y"]}]
    line = render(records, ["name", "load", "tags"], format="value")
    assert line == 'a {"1m":1,"5m":2} ["x","y"]\n'


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "true"), (False, "false"), (3.0, "3"), (0.12345, "0.123"), (7, "7"),
     (float("inf"), "inf"), (float("nan"), "nan")],  # fmt: skip
)
def test_text_value(value, text):
    assert text_value(value) == text


# ---------------------------------------------------------------------------
# Columns and sorting


def test_column_option_selects_and_orders_columns():
    opts = OutputOptions(format="csv", columns=("outcome", "task_name"), stream=io.StringIO())
    render_list(RECORDS, COLUMNS, opts)
    rows = list(csv.reader(io.StringIO(opts.stream.getvalue())))
    assert rows[0] == ["outcome", "task_name"]
    assert rows[1] == ["ok", "gather_cpu"]


def test_column_option_in_json():
    opts = OutputOptions(format="json", columns=("outcome",), stream=io.StringIO())
    render_list(RECORDS, COLUMNS, opts)
    assert json.loads(opts.stream.getvalue()) == [
        {"outcome": "ok"},
        {"outcome": "failed"},
        {"outcome": "ok"},
    ]


def test_unknown_column_lists_the_valid_columns():
    opts = OutputOptions(format="json", columns=("nosuch",), stream=io.StringIO())
    with pytest.raises(UnknownNameError) as info:
        render_list(RECORDS, COLUMNS, opts)
    assert info.value.exit_code == EXIT_USAGE
    message = str(info.value)
    assert "'nosuch'" in message
    for column in COLUMNS:
        assert column in message
    assert opts.stream.getvalue() == ""


def test_unknown_sort_column_is_an_error():
    with pytest.raises(UnknownNameError, match="task_name"):
        render(format="json", sort_column=("nosuch",))


def test_sort_column_ascending_and_descending():
    ascending = json.loads(render(format="json", sort_column=("duration",)))
    assert [row["task_name"] for row in ascending] == ["beat", "gather_cpu", "gather_disk"]
    descending = json.loads(render(format="json", sort_column=("duration",), sort_descending=True))
    assert [row["task_name"] for row in descending] == ["gather_disk", "gather_cpu", "beat"]


def test_sort_by_two_columns():
    rows = json.loads(render(format="json", sort_column=("outcome", "task_name")))
    assert [row["task_name"] for row in rows] == ["gather_disk", "beat", "gather_cpu"]


def test_sort_with_none_and_mixed_types():
    records = [
        {"name": "a", "value": "text"},
        {"name": "b", "value": None},
        {"name": "c", "value": 3},
        {"name": "d", "value": 1.5},
        {"name": "e", "value": True},
        {"name": "f", "value": {"k": 1}},
    ]
    rows = json.loads(render(records, ["name", "value"], format="json", sort_column=("value",)))
    order = [row["name"] for row in rows]
    assert order[-1] == "b"  # None last
    assert order.index("d") < order.index("c") < order.index("a")  # numbers before strings


def test_sort_by_a_column_missing_from_some_rows():
    records = [{"name": "a", "extra": 2}, {"name": "b"}, {"name": "c", "extra": 1}]
    rows = json.loads(render(records, ["name"], format="json", sort_column=("extra",)))
    assert [row["name"] for row in rows] == ["c", "a", "b"]


# ---------------------------------------------------------------------------
# render_one


def test_render_one_json():
    stream = io.StringIO()
    record = {"name": "hostinfo", "rpc_api_version": "1.1", "rpc_methods": [{"name": "echo"}]}
    render_one(record, OutputOptions(format="json", stream=stream))
    assert json.loads(stream.getvalue()) == record


def test_render_one_json_with_columns():
    stream = io.StringIO()
    render_one(
        {"a": 1, "b": 2, "c": 3}, OutputOptions(format="json", columns=("c", "a"), stream=stream)
    )
    data = json.loads(stream.getvalue())
    assert data == {"c": 3, "a": 1}
    assert list(data) == ["c", "a"]


def test_render_one_unknown_field():
    with pytest.raises(UnknownNameError, match="valid columns: a, b"):
        render_one(
            {"a": 1, "b": 2}, OutputOptions(format="json", columns=("z",), stream=io.StringIO())
        )


def test_render_one_table_is_field_value():
    stream = io.StringIO()
    render_one({"name": "hostinfo", "topic": "hostinfo"}, OutputOptions(stream=stream))
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["field", "value"]
    assert lines[1].split() == ["name", "hostinfo"]


def test_render_one_value_is_one_row():
    stream = io.StringIO()
    render_one({"name": "hostinfo", "topic": "t"}, OutputOptions(format="value", stream=stream))
    assert stream.getvalue() == "hostinfo t\n"


# ---------------------------------------------------------------------------
# Terminals and colour


def test_a_tty_gets_a_rich_table(colour_terminal):
    stream = FakeTTY()
    render(format="table", stream=stream, no_color=True)
    text = stream.getvalue()
    assert "┃" in text or "│" in text  # Rich box drawing, not the plain layout
    assert "gather_disk" in text


def test_no_color_option_means_no_escape_codes(colour_terminal):
    stream = FakeTTY()
    render_list(RECORDS, COLUMNS, OutputOptions(stream=stream, no_color=True), title="runs")
    text = stream.getvalue()
    assert "runs" in text
    assert ANSI not in text


def test_no_color_environment_means_no_escape_codes(colour_terminal, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    stream = FakeTTY()
    render_list(RECORDS, COLUMNS, OutputOptions(stream=stream), title="runs")
    assert ANSI not in stream.getvalue()
    assert "failed" in stream.getvalue()


def test_render_one_on_a_tty_without_colour_has_no_escape_codes(colour_terminal):
    stream = FakeTTY()
    render_one({"outcome": "failed"}, OutputOptions(stream=stream, no_color=True), title="t")
    assert ANSI not in stream.getvalue()


def test_colour_marks_a_failed_cell(colour_terminal):
    stream = FakeTTY()
    render(format="table", stream=stream)
    text = stream.getvalue()
    # An escape sequence switches the style on right before the cell's text.
    assert re.search(r"\x1b\[[0-9;]*mfailed", text)
    assert re.search(r"\x1b\[[0-9;]*mok", text)
    assert not re.search(r"\x1b\[[0-9;]*mgather_disk", text)


def test_colour_never_reaches_json_even_on_a_tty(colour_terminal):
    stream = FakeTTY()
    render(format="json", stream=stream)
    assert ANSI not in stream.getvalue()
    assert json.loads(stream.getvalue()) == RECORDS


# ---------------------------------------------------------------------------
# Tables that read at any width (issue 17), through Rich's recorded console


def hostinfo_rows(hosts: int = 2) -> list[dict]:
    rows = []
    for number in range(hosts):
        rows.append(
            {
                "service": "hostinfo",
                "host": f"hostinfo-web-{number:02d}.example.org",
                "state": "stale" if number else "fresh",
                "age_s": 12.4 + 200 * number,
                "cpu_count": 8,
                "load.1m": 0.52,
                "load.5m": 0.61,
                "load.15m": 0.7,
                "memory_total_mb": 15_923,
                "memory_available_mb": 11_002,
                "disk_total_gb": 467.3,
                "disk_free_gb": 201.9,
                "uptime_s": 86_400,
                "platform": "linux",
                "python_version": "3.11.7",
                "hostname": f"hostinfo-web-{number:02d}",
                "pools": [{"pool_name": "fake", "total_capacity_gb": "infinite"}] * 6,
            }
        )
    return rows


def recorded(rows: list[dict], width: int, wide: bool = False) -> tuple[str, list[str]]:
    from rich.console import Console

    from manager_cli.cli.output import rich_table

    table, omitted = rich_table(list(rows[0]), rows, width=width, color=False, wide=wide)
    console = Console(record=True, width=100_000 if wide else width, file=io.StringIO())
    console.print(table)
    return console.export_text(), omitted


@pytest.mark.parametrize("width", [80, 140, 220])
def test_identity_values_never_wrap_and_headers_never_break(width: int) -> None:
    rows = hostinfo_rows()
    text, omitted = recorded(rows, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "service" in line)
    shown = [col for col in rows[0] if col not in omitted]
    for column in shown:
        name = "age" if column == "age_s" else column
        assert re.search(rf"(^|[\s│┃]){re.escape(name)}([\s│┃]|$)", header), (column, header)
    for row in rows:
        body = next(line for line in lines if row["host"] in line)  # whole, on one line
        assert row["service"] in body and row["state"] in body
    assert "12s" in text and "3m" in text  # ages relative
    assert {"service", "host", "state", "age_s"}.isdisjoint(omitted)
    if width == 80:
        assert omitted  # what did not fit is left out (and named), not squeezed
    assert omitted == [c for c in rows[0] if c in omitted]  # in order, the last ones first out


def test_wide_shows_every_column_whole() -> None:
    rows = hostinfo_rows()
    text, omitted = recorded(rows, 80, wide=True)
    assert omitted == []
    assert "python_version" in text and '"pool_name":"fake"' in text
    assert text.count("infinite") == 12  # the long pools cell is not cut


def test_numbers_are_right_aligned_and_long_values_cut() -> None:
    text, _ = recorded(hostinfo_rows(), 220)
    lines = [line for line in text.splitlines() if "hostinfo-web" in line]
    cells = [[c for c in re.split(r"[│┃]", line)] for line in lines]
    header = next(line for line in text.splitlines() if "cpu_count" in line)
    index = [c.strip() for c in re.split(r"[│┃]", header)].index("memory_total_mb")
    assert cells[0][index].endswith("15923 ")  # right-aligned, one space of padding
    few = [{k: row[k] for k in ("service", "host", "state", "pools")} for row in hostinfo_rows()]
    text, omitted = recorded(few, 140)
    lines = [line for line in text.splitlines() if "hostinfo-web" in line]
    assert not omitted and len(lines) == 2  # one line per row
    assert all("…" in line for line in lines)  # the long pools cell is cut, not wrapped


def test_stale_rows_are_dim_and_states_coloured() -> None:
    from rich.console import Console

    from manager_cli.cli.output import rich_table

    rows = hostinfo_rows()
    table, _ = rich_table(list(rows[0])[:4], rows, width=140, color=True)
    console = Console(record=True, width=140, file=io.StringIO(), color_system="truecolor")
    console.print(table)
    styled = console.export_text(styles=True)
    stale_line = next(line for line in styled.splitlines() if "web-01" in line)
    assert "\x1b[2" in stale_line  # dim


def test_durations_read_in_ms_and_s_in_tables_but_stay_seconds_in_json() -> None:
    from manager_cli.cli.output import precise_duration, relative_age

    assert [precise_duration(s) for s in (0.00004, 0.0042, 0.25, 1.5, 12.34, 184)] == [
        "40µs",
        "4.2ms",
        "250ms",
        "1.50s",
        "12.3s",
        "3m04s",
    ]
    assert [relative_age(s) for s in (0, 12.9, 61, 7300, 200_000, -5)] == [
        "0s",
        "12s",
        "1m",
        "2h",
        "2d",
        "-5s",
    ]
    text = render(format="table")
    assert "250ms" in text and "0µs" in text
    assert json.loads(render(format="json"))[0]["duration"] == 0.25


def test_a_narrow_terminal_gets_a_note_of_what_was_left_out(capsys) -> None:
    stream = FakeTTY()
    render_list(hostinfo_rows(), list(hostinfo_rows()[0]), OutputOptions(stream=stream, width=80))
    err = capsys.readouterr().err
    assert "left out to fit" in err and "--wide" in err
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert max(len(line) for line in plain.splitlines()) <= 80


def test_a_wide_column_does_not_push_out_the_narrow_ones_after_it() -> None:
    from manager_cli.cli.output import layout_table

    columns = ["host", "a", "wide", "b", "c"]
    rows = [{"host": "h1", "a": 1, "wide": "x" * 30, "b": 2, "c": 3}]
    layout = layout_table(columns, rows, width=30)
    assert layout.columns == ["host", "a", "b", "c"]
    assert layout.omitted == ["wide"]
    assert layout_table(columns, rows, width=None).omitted == []


def test_the_left_out_note_folds_at_word_ends_to_the_terminal() -> None:
    from manager_cli.cli.output import _omitted_note

    omitted = [f"pools.some_long_key_{i}" for i in range(6)]
    lines = _omitted_note(omitted, 60).splitlines()
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines)
    assert " ".join(lines) == _omitted_note(omitted)  # nothing cut, only folded
    assert "--wide" in _omitted_note(omitted, 60).replace("\n", " ")
