"""One renderer for every view: table (Rich on a TTY, plain text when piped), json, yaml, csv,
value.

Commands build plain records (dicts with snake_case keys) and hand them here; nothing else in the
CLI prints data. Rich is imported only when a table goes to a terminal, so scripts and ``--help``
never pay for it. stdout carries data only; people-facing messages go to stderr.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from ..errors import UnknownNameError

FORMATS = ("table", "json", "yaml", "csv", "value")

# Above this many cells Rich's table layout takes seconds (10,000 rows x 20 columns: ~40 s),
# so a terminal gets the plain aligned table instead; nobody reads that many rows in colour.
RICH_MAX_CELLS = 20_000
# Above this many records JSON is written one record per line: Python's pretty printer cannot
# use the C encoder, and that costs more than the rest of a 10,000-host view.
PRETTY_JSON_MAX_RECORDS = 1_000

# Colours for values that name a state, so a person sees trouble at a glance.
STATE_STYLES = {
    "ok": "green",
    "up": "green",
    "fresh": "green",
    "alive": "green",
    "yes": "green",
    "failed": "bold red",
    "down": "bold red",
    "error": "bold red",
    "stale": "yellow",
    "skipped": "yellow",
    "timeout": "yellow",
    "missing": "yellow",
}


@dataclass
class OutputOptions:
    """How the user asked to see data: format, columns, sort order, colour."""

    format: str = "table"
    columns: tuple[str, ...] = ()
    sort_column: tuple[str, ...] = ()
    sort_descending: bool = False
    no_color: bool = False
    stream: Any = field(default=None)

    @property
    def out(self) -> Any:
        return self.stream or sys.stdout

    def is_tty(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def use_color(self) -> bool:
        return self.is_tty() and not self.no_color and "NO_COLOR" not in os.environ


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -f/-c/--sort-column/--sort-descending to a command, as ``output: OutputOptions``."""

    decorators = [
        click.option(
            "-f",
            "--format",
            "output_format",
            type=click.Choice(FORMATS),
            default="table",
            show_default=True,
            help="Output format.",
        ),
        click.option(
            "-c",
            "--column",
            "output_columns",
            multiple=True,
            metavar="COLUMN",
            help="Show only this column (repeatable).",
        ),
        click.option(
            "--sort-column",
            "output_sort_column",
            multiple=True,
            metavar="COLUMN",
            help="Sort rows by this column (repeatable).",
        ),
        click.option(
            "--sort-descending",
            "output_sort_descending",
            is_flag=True,
            help="Sort in descending order.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def options_from_kwargs(kwargs: dict[str, Any], no_color: bool = False) -> OutputOptions:
    """Pop the output options a command received and return them as OutputOptions."""
    return OutputOptions(
        format=kwargs.pop("output_format", "table"),
        columns=tuple(kwargs.pop("output_columns", ()) or ()),
        sort_column=tuple(kwargs.pop("output_sort_column", ()) or ()),
        sort_descending=bool(kwargs.pop("output_sort_descending", False)),
        no_color=no_color,
    )


# ---------------------------------------------------------------------------
# Data shaping


def _check_columns(wanted: Iterable[str], available: Sequence[str], what: str) -> None:
    for column in wanted:
        if column not in available:
            raise UnknownNameError(
                f"unknown {what} {column!r}",
                hint="valid columns: " + ", ".join(available),
            )


def _sort_key(value: Any) -> tuple[int, Any]:
    # None last, numbers before strings, so a mixed column still sorts without an error.
    if value is None:
        return (2, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def shape_records(
    records: Sequence[Mapping[str, Any]], default_columns: Sequence[str], opts: OutputOptions
) -> tuple[list[str], list[Mapping[str, Any]]]:
    """Apply -c and --sort-column; return (columns, rows)."""
    available = list(default_columns)
    for record in records:
        for key in record:
            if key not in available:
                available.append(key)
    _check_columns(opts.columns, available, "column")
    _check_columns(opts.sort_column, available, "sort column")
    columns = list(opts.columns) or list(default_columns) or available
    rows = list(records)
    if opts.sort_column:
        rows.sort(
            key=lambda row: tuple(_sort_key(row.get(col)) for col in opts.sort_column),
            reverse=opts.sort_descending,
        )
    return columns, rows


def text_value(value: Any) -> str:
    """A cell as plain text: nested values as compact JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str, sort_keys=True)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------------------
# Writers


def _write_json(data: Any, opts: OutputOptions) -> None:
    if isinstance(data, list) and len(data) > PRETTY_JSON_MAX_RECORDS:
        lines = ",\n".join(json.dumps(record, default=_json_default) for record in data)
        opts.out.write("[\n" + lines + "\n]\n")
        return
    opts.out.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _write_yaml(data: Any, opts: OutputOptions) -> None:
    import yaml

    plain = json.loads(json.dumps(data, default=_json_default))
    opts.out.write(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))


def _write_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], opts: OutputOptions):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([text_value(row.get(col)) for col in columns])
    opts.out.write(buffer.getvalue())


def _write_value(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], opts: OutputOptions):
    for row in rows:
        opts.out.write(" ".join(text_value(row.get(col)) for col in columns) + "\n")


def _write_plain_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    opts: OutputOptions,
    title: str | None = None,
) -> None:
    cells = [[text_value(row.get(col)) for col in columns] for row in rows]
    widths = [len(col) for col in columns]
    for line in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, line, strict=True)]
    out = opts.out
    if title:
        out.write(f"# {title}\n")
    out.write(
        "  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip() + "\n"
    )
    for line in cells:
        out.write(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        )


def _write_rich_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    opts: OutputOptions,
    title: str | None,
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    color = opts.use_color()
    # no_color alone would still emit bold and italic (the title); without colour, no escapes.
    console = Console(
        file=opts.out, color_system="auto" if color else None, no_color=not color, highlight=False
    )
    table = Table(title=title, header_style="bold" if color else None, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        rendered = []
        for column in columns:
            text = text_value(row.get(column))
            style = STATE_STYLES.get(text.lower()) if color else None
            rendered.append(Text(text, style=style or ""))
        table.add_row(*rendered)
    console.print(table)


def render_list(
    records: Sequence[Mapping[str, Any]],
    default_columns: Sequence[str],
    opts: OutputOptions,
    title: str | None = None,
) -> None:
    """Render a list of records in the chosen format."""
    columns, rows = shape_records(records, default_columns, opts)
    if opts.format == "json":
        _write_json([{col: row.get(col) for col in columns} for row in rows], opts)
    elif opts.format == "yaml":
        _write_yaml([{col: row.get(col) for col in columns} for row in rows], opts)
    elif opts.format == "csv":
        _write_csv(columns, rows, opts)
    elif opts.format == "value":
        _write_value(columns, rows, opts)
    elif opts.is_tty() and len(rows) * len(columns) <= RICH_MAX_CELLS:
        _write_rich_table(columns, rows, opts, title)
    else:
        _write_plain_table(columns, rows, opts, title)


def render_one(record: Mapping[str, Any], opts: OutputOptions, title: str | None = None) -> None:
    """Render one object: a Field/Value table, or the object itself in json/yaml."""
    if opts.format in ("json", "yaml"):
        keys = list(opts.columns) or list(record)
        _check_columns(opts.columns, list(record), "field")
        data = {key: record.get(key) for key in keys}
        (_write_json if opts.format == "json" else _write_yaml)(data, opts)
        return
    columns = list(opts.columns) or list(record)
    _check_columns(opts.columns, list(record), "field")
    if opts.format in ("csv", "value"):
        # A single row: one column per field, as cliff's show-one does.
        row = {key: record.get(key) for key in columns}
        (_write_csv if opts.format == "csv" else _write_value)(columns, [row], opts)
        return
    rows = [{"field": key, "value": record.get(key)} for key in columns]
    plain = OutputOptions(format="table", no_color=opts.no_color, stream=opts.stream)
    render_list(rows, ["field", "value"], plain, title=title)


def message(text: str) -> None:
    """A line for people, on stderr (never mixed with the data on stdout)."""
    click.echo(text, err=True)


# ---------------------------------------------------------------------------
# Streams: one record at a time, as it happens (tap)


class RecordStream:
    """Write records one line each as they arrive: json is one object per line (JSON Lines),
    csv a header then rows, value the cells, table fixed-width columns under one header.

    Lines are flushed at once on a terminal; piped, ``flush()`` (called by the command a few
    times a second) pushes them, so a fast stream is not one write per record.
    """

    def __init__(
        self,
        default_columns: Sequence[str],
        widths: Mapping[str, int],
        opts: OutputOptions,
        available: Sequence[str] = (),
    ) -> None:
        _check_columns(opts.columns, list(default_columns) + list(available), "column")
        self.columns = list(opts.columns) or list(default_columns)
        self.widths = widths
        self.opts = opts
        self._tty = opts.is_tty()
        self._header_done = False
        if opts.format == "yaml":
            raise UnknownNameError(
                "-f yaml cannot stream one record a line", hint="use -f json (JSON Lines)"
            )

    def _cells(self, record: Mapping[str, Any]) -> list[str]:
        return [text_value(record.get(col)) for col in self.columns]

    def _line(self, cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(self.widths.get(col, 0))
            for col, cell in zip(self.columns, cells, strict=True)
        ]
        return "  ".join(parts).rstrip() + "\n"

    def write(self, record: Mapping[str, Any]) -> None:
        out, fmt = self.opts.out, self.opts.format
        if fmt == "json":
            data = {col: record.get(col) for col in self.columns}
            out.write(json.dumps(data, default=_json_default, separators=(",", ":")) + "\n")
        elif fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if not self._header_done:
                writer.writerow(self.columns)
                self._header_done = True
            writer.writerow(self._cells(record))
            out.write(buffer.getvalue())
        elif fmt == "value":
            out.write(" ".join(self._cells(record)) + "\n")
        else:
            if not self._header_done:
                out.write(self._line([col.upper() for col in self.columns]))
                self._header_done = True
            out.write(self._line(self._cells(record)))
        if self._tty:
            out.flush()

    def flush(self) -> None:
        self.opts.out.flush()


class LiveTable:
    """A table redrawn in place on a terminal (Rich Live), for views that change each second."""

    def __init__(self, columns: Sequence[str], opts: OutputOptions, title: str | None = None):
        from rich.console import Console
        from rich.live import Live

        self.columns = list(columns)
        self.title = title
        color = opts.use_color()
        self._console = Console(
            file=opts.out, color_system="auto" if color else None, no_color=not color
        )
        self._color = color
        self._live = Live(console=self._console, refresh_per_second=4, auto_refresh=False)

    def _table(self, rows: Sequence[Mapping[str, Any]], caption: str | None) -> Any:
        from rich.table import Table

        table = Table(
            title=self.title, caption=caption, header_style="bold" if self._color else None
        )
        for column in self.columns:
            table.add_column(column, justify="left" if column == "method" else "right")
        for row in rows:
            table.add_row(*(text_value(row.get(col)) for col in self.columns))
        return table

    def __enter__(self) -> LiveTable:
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._live.__exit__(*exc_info)

    def update(self, rows: Sequence[Mapping[str, Any]], caption: str | None = None) -> None:
        self._live.update(self._table(rows, caption), refresh=True)
