"""``managerctl tap``: a live, decoded view of the requests sent to a topic (copies only)."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from typing import Any

import click

from ..timefmt import iso_utc_ms
from .common import app_state, output_from
from .complete import complete_hosts, complete_topics
from .output import OutputOptions, message, output_options

COLUMNS = (
    "time",
    "kind",
    "target",
    "method",
    "version",
    "namespace",
    "request_id",
    "caller",
    "bytes",
)
# -f json carries these too (-c picks any of them).
EXTRA_COLUMNS = ("msg_id", "args", "compression", "error")
WIDTHS = {
    "time": 12,
    "kind": 6,
    "target": 24,
    "method": 28,
    "version": 7,
    "namespace": 10,
    "request_id": 44,
    "caller": 24,
}
TAP_NICENESS = 10
STATS_COLUMNS = ("method", "rate", "requests", "bytes", "callers", "calls", "casts", "fanouts")


def lower_priority() -> str:
    """Run on the CPU time the services on this host leave: an observer should not take CPU
    from the services it watches. If it falls behind, its bounded queue drops copies (and
    says so), the services do not. Linux's SCHED_IDLE runs it only when nothing else wants the
    CPU (nice 10 still took a tenth of a busy core's share); elsewhere nice 10. Says which."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        pass
    with contextlib.suppress(OSError):
        os.nice(TAP_NICENESS)
    return f"nice {TAP_NICENESS}"


def _shown_time(value: float, *, iso: bool) -> str:
    if iso:
        return iso_utc_ms(value)
    moment = datetime.fromtimestamp(value, timezone.utc)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@click.command("tap")
@click.option(
    "--topic",
    "-t",
    envvar="MANAGERCTL_TOPIC",
    required=True,
    help="The topic to watch (e.g. conductor, compute).",
    shell_complete=complete_topics,
)
@click.option("--exchange", metavar="NAME", help="Control exchange (default: config).")
@click.option(
    "--host",
    metavar="HOST",
    help="Only requests addressed to TOPIC.HOST (and the fanouts HOST receives too).",
    shell_complete=complete_hosts,
)
@click.option(
    "--method", "methods", multiple=True, metavar="METHOD", help="Only this method (repeatable)."
)
@click.option("--fanout", "fanout_only", is_flag=True, help="Only fanout casts.")
@click.option(
    "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N requests shown."
)
@click.option(
    "--duration", type=click.FloatRange(min=0), metavar="SECONDS", help="Stop after SECONDS."
)
@click.option(
    "--stats",
    is_flag=True,
    help="Per method: requests/s, bytes and distinct callers (a live table on a terminal, "
    "JSON totals at the end when piped).",
)
@click.option(
    "--queue-limit",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Copies the tap's queue holds before the broker drops the oldest.",
)
@click.option(
    "--nice/--no-nice",
    default=True,
    show_default=True,
    help="Run only on CPU time the services on this host leave idle (Linux SCHED_IDLE, "
    "else nice 10).",
)
@output_options
def tap(**kwargs: Any) -> None:
    """Show the requests sent to TOPIC as they happen, decoded, one line each.

    The tap reads copies: an exclusive queue of its own, bound to the control exchange with
    TOPIC.# (TOPIC and every TOPIC.HOST; or TOPIC.HOST alone) and to the TOPIC_fanout exchange.
    The services' own queues are never touched, so they receive exactly what they did before,
    and the queue goes away with the tap. Each line: time (UTC), kind (call, cast, fanout),
    target, method, version, namespace, request id, caller (user/project of the context), body
    size in bytes; -f json writes one object per line (with the arguments). Compressed bodies
    are decoded. Tokens, passwords, secrets and keys (any argument naming one, however deep) and
    URL passwords are masked.

    The tap's queue holds at most --queue-limit copies: a tap that falls behind loses the
    oldest ones rather than grow the broker's memory, and says how many at the end. It runs
    only on CPU time the services leave idle (--no-nice to keep its priority). Ctrl-C stops it
    (exit 130) and leaves nothing on the broker.

    \b
    Examples:
      managerctl tap --topic conductor --exchange nova
      managerctl tap -t compute --host cmp-07 --method build_and_run_instance
      managerctl tap -t conductor --exchange nova --stats --duration 60 | jq .methods
      managerctl tap -t scheduler --fanout -f json --count 10
    """
    import signal

    from ..rpc import get_transport
    from ..rpc.tap import Tap, TapFilter, TapStats

    # Ctrl-C must stop a tap even when its shell started it with SIGINT ignored (a background
    # job): it then closes its queue and exits 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if kwargs["nice"]:
        lower_priority()
    output = output_from(kwargs)
    settings = app_state().settings
    exchange = kwargs["exchange"]
    if not exchange and settings.explicit("control_exchange") is None:
        from ..families import default_exchange

        exchange = default_exchange(kwargs["topic"])  # nova's services listen on 'nova'
    tap_ = Tap(
        get_transport(settings),
        kwargs["topic"],
        exchange=exchange,
        host=kwargs["host"],
        fanout_only=kwargs["fanout_only"],
        queue_limit=kwargs["queue_limit"],
        filter=TapFilter(frozenset(kwargs["methods"])),
        with_args=not kwargs["stats"],
    )
    if kwargs["stats"]:
        _run_stats(tap_, TapStats(), output, kwargs["count"], kwargs["duration"])
    else:
        _run_lines(tap_, output, kwargs["count"], kwargs["duration"])


def _summary(tap_: Any) -> None:
    counters = tap_.counters
    text = f"tap: {counters.kept} request(s) shown, {counters.received} copies received"
    if counters.undecodable:
        text += f", {counters.undecodable} undecodable"
    message(text)
    if counters.dropped:
        bound = "" if counters.dropped_exact else "at least "
        message(
            f"managerctl: warning: the tap fell behind: the broker dropped {bound}"
            f"{counters.dropped} of its copies (queue limit {tap_.queue_limit}); the services "
            "were not affected"
        )


def _run_lines(tap_: Any, output: OutputOptions, count: int | None, duration: float | None):
    from .output import RecordStream

    iso = output.format != "table"
    default = COLUMNS + EXTRA_COLUMNS if output.format == "json" else COLUMNS
    stream = RecordStream(default, WIDTHS, output, available=EXTRA_COLUMNS)

    def show(record: dict[str, Any]) -> None:
        record["time"] = _shown_time(record["time"], iso=iso)
        stream.write(record)

    tap_.on_record = show
    tap_.start()
    try:
        message(f"tapping {_bindings(tap_)}; Ctrl-C to stop")
        tap_.run(count=count, duration=duration, tick=stream.flush, tick_interval=0)
    finally:
        tap_.close()
        try:
            stream.flush()
        finally:
            _summary(tap_)


def _bindings(tap_: Any) -> str:
    text = ", ".join(f"{exchange}/{key}" for exchange, key in tap_.bindings)
    if not tap_.fanout_bound:
        text += f" (no {tap_.topic}_fanout exchange yet: fanouts are seen once it exists)"
    return text


def _run_stats(
    tap_: Any, stats: Any, output: OutputOptions, count: int | None, duration: float | None
) -> None:
    import json

    tap_.on_record = stats.add
    live = output.is_tty() and output.format == "table"
    tap_.start()
    try:
        message(f"tapping {_bindings(tap_)}; Ctrl-C to stop")
        if live:
            from .output import LiveTable

            with LiveTable(STATS_COLUMNS, output, title=f"requests to {tap_.topic}") as table:

                def refresh() -> None:
                    counters = tap_.counters
                    table.update(
                        stats.rows(),
                        caption=f"{counters.kept} requests, {counters.dropped} dropped "
                        f"(rate: last {stats.window:g}s)",
                    )

                refresh()
                tap_.run(count=count, duration=duration, tick=refresh)
                refresh()
        else:
            tap_.run(count=count, duration=duration)
    finally:
        tap_.close()
        if not live:
            output.out.write(json.dumps(stats.totals(tap_.counters)) + "\n")
            output.out.flush()
        _summary(tap_)
