"""One renderer for every view: table (Rich on a TTY, plain text when piped), json, yaml, csv,
value.

Commands build plain records (dicts with snake_case keys) and hand them here; nothing else in the
CLI prints data. Rich is imported only when a table goes to a terminal, so scripts and ``--help``
never pay for it. stdout carries data only; people-facing messages go to stderr.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from ..errors import BadInputError, UnknownNameError

FORMATS = ("table", "json", "yaml", "csv", "value")

# Above this many cells Rich's table layout takes seconds (10,000 rows x 20 columns: ~40 s),
# so a terminal gets the plain aligned table instead; nobody reads that many rows in colour.
RICH_MAX_CELLS = 20_000
# Above this many records JSON is written one record per line: Python's pretty printer cannot
# use the C encoder, and that costs more than the rest of a 10,000-host view.
PRETTY_JSON_MAX_RECORDS = 1_000

# Columns that say which row this is, and how it is: never wrapped, never left out to fit.
IDENTITY_COLUMNS = frozenset(
    {"service", "host", "name", "task", "hook", "topic", "state", "verdict", "age_s", "group"}
)
# Other columns are cut (with an ellipsis) past this width; -f json/csv and --wide keep all.
MAX_CELL_WIDTH = 40
# Rich's default table box: a border and one space each side per column, one border more.
RICH_COLUMN_PADDING = 3
# Seconds shown as durations in tables (ms below one second): the time a run took.
DURATION_COLUMNS = frozenset({"duration"})
# Seconds shown as a relative age or delay ("12s", "3m"): how long ago, how long until.
AGE_COLUMNS = frozenset({"age_s", "next_due_in"})
# Row states drawn dim, so the rows to worry about stand out.
DIM_STATES = frozenset({"stale", "down", "stopped"})

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
    wide: bool = False
    # The terminal's width when it must not be asked (tests); None: as the terminal says.
    width: int | None = None
    stream: Any = field(default=None)

    @property
    def out(self) -> Any:
        return self.stream or sys.stdout

    def is_tty(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def use_color(self) -> bool:
        return self.is_tty() and not self.no_color and "NO_COLOR" not in os.environ


def output_options_with(
    format_default: str | None = "table",
    format_help: str = "Output format.",
    wide: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-f/-c/--sort-column/--sort-descending (and --wide) as ``output: OutputOptions``, for a
    command whose default format or help differs (``probe`` prints one line by default)."""

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        decorators = [
            click.option(
                "-f",
                "--format",
                "output_format",
                type=click.Choice(FORMATS),
                default=format_default,
                show_default=format_default is not None,
                help=format_help,
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
        if wide:
            decorators.append(
                click.option(
                    "--wide",
                    "output_wide",
                    is_flag=True,
                    help="Table: show every column and whole values, even wider than the terminal.",
                )
            )
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return add


output_options = output_options_with()
"""Add -f/-c/--sort-column/--sort-descending/--wide to a command, as ``output: OutputOptions``."""


def options_from_kwargs(kwargs: dict[str, Any], no_color: bool = False) -> OutputOptions:
    """Pop the output options a command received and return them as OutputOptions."""
    return OutputOptions(
        format=kwargs.pop("output_format", "table"),
        columns=tuple(kwargs.pop("output_columns", ()) or ()),
        sort_column=tuple(kwargs.pop("output_sort_column", ()) or ()),
        sort_descending=bool(kwargs.pop("output_sort_descending", False)),
        wide=bool(kwargs.pop("output_wide", False)),
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


def check_column_names(opts: OutputOptions) -> None:
    """What can be checked of -c and --sort-column before any data exists (a command that
    waits for its data calls this first, so a typo never costs the wait)."""
    for flag, names in (("-c", opts.columns), ("--sort-column", opts.sort_column)):
        for name in names:
            if (
                not name.strip()
                or name != name.strip()
                or name.startswith(".")
                or name.endswith(".")
            ):
                raise BadInputError(
                    f"bad column name {name!r} for {flag}",
                    hint="give a column as shown, e.g. host or pools.total_capacity_gb",
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
    records: Sequence[Mapping[str, Any]],
    default_columns: Sequence[str],
    opts: OutputOptions,
    *,
    open_columns: bool = False,
) -> tuple[list[str], list[Mapping[str, Any]]]:
    """Apply -c and --sort-column; return (columns, rows).

    ``open_columns``: the columns are keys the data may or may not carry (capabilities heard
    live): one that no record has is shown empty, with a note on stderr, instead of an error.
    """
    available = list(default_columns)
    seen = set(available)
    for record in records:
        for key in record:
            if key not in seen:
                seen.add(key)
                available.append(key)
    if open_columns:
        absent = [c for c in dict.fromkeys(opts.columns + opts.sort_column) if c not in seen]
        if absent:
            message(f"note: no record has {', '.join(absent)} (shown empty)")
    else:
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
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)  # JSON from Python carries NaN and Infinity; int() of them raises
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str, sort_keys=True)
    return str(value)


def precise_duration(seconds: float) -> str:
    """How long something took: ``40µs``, ``0.4ms``, ``12ms``, ``1.25s``, ``3m04s``."""
    if seconds < 0.0001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def relative_age(seconds: float) -> str:
    """An age at a glance: ``12s``, ``3m``, ``2h``, ``4d`` (negative: ``-12s``)."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{int(seconds // size)}{unit}"
    return f"{sign}{int(seconds)}s"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell_text(column: str, value: Any) -> str:
    """A cell as a person reads it in a table: durations and ages humanised, else text_value."""
    if _is_number(value):
        if column in DURATION_COLUMNS:
            return precise_duration(float(value))
        if column in AGE_COLUMNS:
            return relative_age(float(value))
    return text_value(value)


def header_text(column: str) -> str:
    """``age_s`` reads ``age`` once its value reads ``12s``."""
    return column[:-2] if column in AGE_COLUMNS and column.endswith("_s") else column


@dataclass
class TableLayout:
    """What a table shows at a width: the columns kept, their widths and alignment, the rest.

    ``texts`` holds the cells column by column (a big table is formatted a column at a time);
    ``cells`` gives them row by row."""

    columns: list[str]
    headers: list[str]
    widths: list[int]
    right: list[bool]
    texts: list[list[str]]
    omitted: list[str]

    @property
    def cells(self) -> list[list[str]]:
        return [list(line) for line in zip(*self.texts, strict=True)]


_PLAIN_KINDS = frozenset({str, int, float, bool, type(None), dict, list})
_NUMBER_KINDS = frozenset({int, float})


def _column_texts(values: list[Any], convert: Callable[[Any], str]) -> list[str]:
    """``convert`` of each value, without a call per cell for a column of text or integers
    (100,000 rows x 20 columns is two million cells)."""
    kinds = set(map(type, values))
    if kinds <= {str}:
        return values
    if kinds <= {int, str}:
        return list(map(str, values))
    return list(map(convert, values))


def _is_numeric_column(values: list[Any]) -> bool:
    """Right-aligned: some number, and nothing but numbers and blanks."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN_KINDS:
        kinds.discard(type(None))
        return bool(kinds) and kinds <= _NUMBER_KINDS
    return any(_is_number(v) for v in values) and all(v is None or _is_number(v) for v in values)


def layout_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    width: int | None,
    *,
    wide: bool = False,
    identity: Iterable[str] = IDENTITY_COLUMNS,
) -> TableLayout:
    """Fit a table to ``width`` (None: no limit) without squeezing: identity columns keep their
    whole width, other columns are cut at MAX_CELL_WIDTH, and the columns that still do not fit
    are left out (last first), to be named in a note. ``wide``: everything, whole."""
    keep_whole = set(identity)
    values = [[row.get(col) for row in rows] for col in columns]
    texts = []
    for col, column_values in zip(columns, values, strict=True):
        if col in DURATION_COLUMNS or col in AGE_COLUMNS:
            texts.append([cell_text(col, value) for value in column_values])
        else:
            texts.append(_column_texts(column_values, text_value))
    headers = [header_text(col) for col in columns]
    widths = [
        max(len(header), max(map(len, column_texts), default=0))
        for header, column_texts in zip(headers, texts, strict=True)
    ]
    if not wide:
        widths = [
            w if col in keep_whole else max(len(h), min(w, MAX_CELL_WIDTH))
            for col, h, w in zip(columns, headers, widths, strict=True)
        ]
    right = [_is_numeric_column(column_values) for column_values in values]
    kept = list(range(len(columns)))
    if width is not None and not wide:

        def total(indexes: list[int]) -> int:
            return sum(widths[i] for i in indexes) + RICH_COLUMN_PADDING * len(indexes) + 1

        # Identity columns stay whatever it takes; the others, in their order (which is their
        # priority), each where it still fits, so one wide column does not push out all the
        # narrow ones after it.
        identity_columns = [i for i, col in enumerate(columns) if col in keep_whole]
        used = total(identity_columns)
        fitting = set(identity_columns)
        for index, col in enumerate(columns):
            cost = widths[index] + RICH_COLUMN_PADDING
            if col not in keep_whole and used + cost <= width:
                fitting.add(index)
                used += cost
        kept = sorted(fitting)
    return TableLayout(
        columns=[columns[i] for i in kept],
        headers=[headers[i] for i in kept],
        widths=[widths[i] for i in kept],
        right=[right[i] for i in kept],
        texts=[texts[i] for i in kept],
        omitted=[columns[i] for i in range(len(columns)) if i not in kept],
    )


def _omitted_note(omitted: Sequence[str], width: int | None = None) -> str:
    """What was left out; folded at word ends to ``width`` (a terminal would cut mid-word)."""
    shown = ", ".join(omitted[:8]) + (f" and {len(omitted) - 8} more" if len(omitted) > 8 else "")
    text = f"{len(omitted)} column(s) left out to fit: {shown} (--wide for all, -c to choose)"
    if width is None or len(text) <= width:
        return text
    import textwrap

    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------------------
# Writers


def _write_json(data: Any, opts: OutputOptions) -> None:
    if isinstance(data, list) and len(data) > PRETTY_JSON_MAX_RECORDS:
        encode = json.JSONEncoder(default=_json_default).encode  # one encoder for every line
        opts.out.write("[\n" + ",\n".join(map(encode, data)) + "\n]\n")
        return
    opts.out.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _write_yaml(data: Any, opts: OutputOptions) -> None:
    import yaml

    plain = json.loads(json.dumps(data, default=_json_default))
    opts.out.write(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))


def _write_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], opts: OutputOptions):
    import csv  # only -f csv needs it

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    texts = [_column_texts([row.get(col) for row in rows], text_value) for col in columns]
    writer.writerows(zip(*texts, strict=True))
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
    # Piped, a table keeps every column (grep and awk read it); on a terminal it fits.
    width = _terminal_width(opts) if opts.is_tty() else None
    layout = layout_table(columns, rows, width, wide=opts.wide or width is None)
    out = opts.out
    if title:
        out.write(f"# {title}\n")
    header = "  ".join(h.ljust(w) for h, w in zip(layout.headers, layout.widths, strict=True))
    out.write(header.rstrip() + "\n")
    # Padded a column at a time, then joined a line at a time: no call per cell.
    padded = [
        [text.rjust(w) for text in texts] if right else [text.ljust(w) for text in texts]
        for texts, w, right in zip(layout.texts, layout.widths, layout.right, strict=True)
    ]
    lines = ["  ".join(cells).rstrip() for cells in zip(*padded, strict=True)]
    if lines:
        out.write("\n".join(lines) + "\n")
    if layout.omitted:
        message(_omitted_note(layout.omitted))


def _terminal_width(opts: OutputOptions) -> int:
    if opts.width is not None:
        return opts.width
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def rich_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    width: int | None,
    color: bool,
    wide: bool = False,
    title: str | None = None,
    changed: Iterable[tuple[int, str]] = (),
) -> tuple[Any, list[str]]:
    """A Rich table that reads at ``width``, and the columns left out to fit it.

    ``changed``: (row index, column) cells to highlight (what a --watch refresh changed).
    """
    from rich.table import Table
    from rich.text import Text

    layout = layout_table(columns, rows, width, wide=wide)
    marked = set(changed)
    table = Table(title=title, header_style="bold" if color else None, expand=False)
    for header, w, right in zip(layout.headers, layout.widths, layout.right, strict=True):
        table.add_column(
            header,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=w,
            max_width=None if wide else max(w, len(header)),
        )
    for index, (row, cells) in enumerate(zip(rows, layout.cells, strict=True)):
        state = str(row.get("state") or "").lower()
        rendered = []
        for column, text in zip(layout.columns, cells, strict=True):
            style = STATE_STYLES.get(text.lower(), "") if color else ""
            if color and (index, column) in marked:
                style = f"{style} reverse".strip()
            rendered.append(Text(text, style=style))
        table.add_row(*rendered, style="dim" if color and state in DIM_STATES else None)
    return table, layout.omitted


def _console(opts: OutputOptions, width: int | None = None) -> Any:
    from rich.console import Console

    color = opts.use_color()
    # no_color alone would still emit bold and italic (the title); without colour, no escapes.
    return Console(
        file=opts.out,
        color_system="auto" if color else None,
        no_color=not color,
        highlight=False,
        width=width,
    )


def _write_rich_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    opts: OutputOptions,
    title: str | None,
) -> None:
    width = _terminal_width(opts)
    table, omitted = rich_table(
        columns, rows, width=width, color=opts.use_color(), wide=opts.wide, title=title
    )
    # --wide: as wide as the table is, past the terminal's edge (as ps --wide does).
    console = _console(opts, width=None if not opts.wide else max(width, _measure(table)))
    if not opts.wide:
        console.width = width
    console.print(table)
    if omitted:
        message(_omitted_note(omitted, console.width))


def _measure(table: Any) -> int:
    from rich.console import Console

    probe = Console(width=100_000, file=io.StringIO())
    return probe.measure(table).maximum


def _in_column_order(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> list[Any]:
    """Each row with exactly ``columns``, in that order (None where it has none)."""
    import operator

    if len(columns) > 1:
        # Rows that have every column are picked in C (100,000 rows: a fraction of the dict
        # comprehension per row); a row without one sends all of them the slow way.
        pick = operator.itemgetter(*columns)
        try:
            return [dict(zip(columns, pick(row), strict=True)) for row in rows]
        except KeyError:
            pass
    return [{col: row.get(col) for col in columns} for row in rows]


def render_list(
    records: Sequence[Mapping[str, Any]],
    default_columns: Sequence[str],
    opts: OutputOptions,
    title: str | None = None,
    *,
    open_columns: bool = False,
) -> None:
    """Render a list of records in the chosen format (``open_columns``: see shape_records)."""
    columns, rows = shape_records(records, default_columns, opts, open_columns=open_columns)
    if opts.format == "json":
        _write_json(_in_column_order(rows, columns), opts)
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


def card_sections(
    fields: Mapping[str, Any],
) -> tuple[list[tuple[str, list[tuple[str, Any]]]], list[tuple[str, list[Mapping[str, Any]]]]]:
    """A record's dotted keys grouped by prefix (plain keys first), and its list-of-dict values
    as sub-tables: ``([(group, [(key, value)])], [(key, rows)])``."""
    groups: dict[str, list[tuple[str, Any]]] = {"": []}
    tables: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in fields.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            tables.append((key, value))
            continue
        group, dot, rest = key.partition(".")
        if dot:
            groups.setdefault(group, []).append((rest, value))
        else:
            groups[""].append((key, value))
    return [(name, items) for name, items in groups.items() if items], tables


# What names an item of a sub-table (cinder's pool_name): its first column, whatever the order
# the item's keys came in.
NAME_KEYS = ("pool_name", "name")


def _sub_table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [k for k in NAME_KEYS if k in columns] + [k for k in columns if k not in NAME_KEYS]


def render_card(heading: str, fields: Mapping[str, Any], opts: OutputOptions) -> None:
    """One record as a card: a heading, key / value grouped by dotted prefix, and list-of-dict
    values (cinder's pools) as sub-tables. Rich on a terminal, plain text when piped."""
    groups, tables = card_sections(fields)
    if opts.is_tty():
        from rich.table import Table

        console = _console(opts)
        console.width = _terminal_width(opts)
        color = opts.use_color()
        console.print(heading, style="bold" if color else None)
        card = Table(show_header=False, box=None, pad_edge=False, expand=False)
        card.add_column("key", no_wrap=True, style="bold" if color else None)
        card.add_column("value", overflow="fold")
        for name, items in groups:
            if name:
                card.add_row(f"{name}:", "")
            for key, value in items:
                text = cell_text(key, value)
                style = STATE_STYLES.get(text.lower(), "") if color else ""
                card.add_row(f"  {key}" if name else key, text, style=style or None)
        console.print(card)
        for key, rows in tables:
            columns = _sub_table_columns(rows)
            table, omitted = rich_table(
                columns, rows, width=console.width, color=color, wide=opts.wide, title=key
            )
            console.print(table)
            if omitted:
                message(_omitted_note(omitted, console.width))
        return
    out = opts.out
    out.write(heading + "\n")
    width = max([len(k) + (2 if g else 0) for g, items in groups for k, _ in items] or [0])
    for name, items in groups:
        if name:
            out.write(f"{name}:\n")
        for key, value in items:
            label = f"  {key}" if name else key
            out.write(f"{label.ljust(width)}  {cell_text(key, value)}".rstrip() + "\n")
    for key, rows in tables:
        out.write("\n")
        columns = _sub_table_columns(rows)
        _write_plain_table(columns, rows, opts, title=key)


def changed_cells(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    key: Sequence[str],
) -> set[tuple[int, str]]:
    """(row index in ``after``, column) of every cell that differs from the same row (by
    ``key`` columns) in ``before``; every cell of a new row."""
    old = {tuple(row.get(k) for k in key): row for row in before}
    marked: set[tuple[int, str]] = set()
    for index, row in enumerate(after):
        previous = old.get(tuple(row.get(k) for k in key))
        for column in columns:
            # Ages move every second by design: a change of age is no news.
            if column in AGE_COLUMNS and previous is not None:
                continue
            if previous is None or previous.get(column) != row.get(column):
                marked.add((index, column))
    return marked


def watch(
    produce: Callable[[], tuple[Sequence[Mapping[str, Any]], list[str]]],
    interval: float,
    opts: OutputOptions,
    *,
    key: Sequence[str] = ("service", "host"),
    title: Callable[[], str] | None = None,
    sleep: Callable[[float], None] | None = None,
    count: int | None = None,
) -> None:
    """Refresh a view every ``interval`` seconds until Ctrl-C (KeyboardInterrupt, exit 130).

    On a terminal: one Rich Live table redrawn in place, the cells that changed since the last
    refresh highlighted. Piped: one snapshot per interval, each headed by its time, so a log
    or ``tail -f`` shows the history. ``count`` stops after that many refreshes (tests).
    """
    import time

    sleep = sleep or time.sleep
    shown = 0
    if opts.format != "table" or not opts.is_tty():
        while count is None or shown < count:
            rows, columns = produce()
            if opts.format == "table":
                opts.out.write(f"# {title() if title else ''}\n".replace("#  ", "# "))
            render_list(rows, columns, opts)
            if opts.format == "table":
                opts.out.write("\n")
            opts.out.flush()
            shown += 1
            if count is None or shown < count:
                sleep(interval)
        return
    from rich.live import Live

    console = _console(opts)
    previous: list[Mapping[str, Any]] = []
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while count is None or shown < count:
            rows, columns = produce()
            columns, rows = shape_records(rows, columns, opts)
            marked = changed_cells(previous, rows, columns, key) if shown else set()
            table, omitted = rich_table(
                columns,
                rows,
                width=_terminal_width(opts),
                color=opts.use_color(),
                wide=opts.wide,
                title=title() if title else None,
                changed=marked,
            )
            if omitted:
                table.caption = _omitted_note(omitted)
            live.update(table, refresh=True)
            previous = [dict(row) for row in rows]
            shown += 1
            if count is None or shown < count:
                sleep(interval)


_EIGHTHS = " ▁▂▃▄▅▆▇█"


def plot_series(points: Sequence[tuple[float, float]], width: int, height: int = 10) -> list[str]:
    """A numeric series as a block chart of ``height`` lines and about ``width`` columns: time
    left to right (a step line: a value holds until the next change), the value's range
    bottom to top, labelled with max and min on the left and the first and last time below."""
    import datetime

    if not points:
        return []
    values = [float(v) for _, v in points]
    low, high = min(values), max(values)
    labels = [text_value(high), text_value(low)]
    label_width = max(len(label) for label in labels)
    columns = max(10, width - label_width - 3)
    start, end = points[0][0], points[-1][0]
    span = (end - start) or 1.0
    # The value each column shows: the last point at or before its time.
    level: list[float] = []
    index = 0
    for column in range(columns):
        moment = start + span * column / max(1, columns - 1)
        while index + 1 < len(points) and points[index + 1][0] <= moment:
            index += 1
        level.append(float(points[index][1]))
    scale = (high - low) or 1.0
    eighths = [
        round((v - low) / scale * (height * 8 - 1)) + 1 if high > low else height * 4 for v in level
    ]
    lines = []
    for row in range(height, 0, -1):
        floor = (row - 1) * 8
        cells = "".join(_EIGHTHS[max(0, min(8, e - floor))] for e in eighths)
        label = labels[0] if row == height else labels[1] if row == 1 else ""
        lines.append(f"{label.rjust(label_width)} ┤{cells}")

    def clock(moment: float) -> str:
        stamp = datetime.datetime.fromtimestamp(moment, tz=datetime.timezone.utc)
        return stamp.strftime("%m-%d %H:%M:%S")

    first, last = clock(start), clock(end)
    axis = " " * label_width + " └" + "─" * columns
    under = " " * (label_width + 2) + first + last.rjust(max(1, columns - len(first)))
    return [*lines, axis, under]


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
            import csv

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
