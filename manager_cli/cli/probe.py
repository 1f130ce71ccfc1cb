"""``managerctl probe``: is an oslo.messaging RPC service alive? Any answer says yes.

Made for liveness probes and monitoring checks, so it starts fast: the library and pika are
imported when the command runs, oslo.config only with a config file, rich only for a table on a
terminal (the default output is one line of values).
"""

from __future__ import annotations

from typing import Any

import click

from ..probe import DEFAULT_TIMEOUT, METHODS, PING
from .common import app_state
from .complete import complete_hosts, complete_topics
from .output import FORMATS, OutputOptions, render_list, render_one
from .progress import waiting

# The one line a single probe prints by default, and the columns of the --all table.
LINE_COLUMNS = ["host", "topic", "verdict", "rtt_ms"]
TABLE_COLUMNS = ["host", "service", "verdict", "rtt_ms", "answer"]


def _client(settings: Any, timeout: float) -> Any:
    """A one-shot client: its reply queue is exclusive, so it goes away with the process."""
    from ..rpc.client import RPCClient
    from ..rpc.transport import from_settings

    url, options = from_settings(settings)
    return RPCClient(
        url,
        options=options,
        timeout=timeout,
        exclusive=True,
    )


def _output(kwargs: dict[str, Any], probe_all: bool) -> OutputOptions:
    return OutputOptions(
        format=kwargs.pop("output_format") or ("table" if probe_all else "value"),
        columns=tuple(kwargs.pop("output_columns") or ()),
        sort_column=tuple(kwargs.pop("output_sort_column") or ()),
        sort_descending=bool(kwargs.pop("output_sort_descending")),
        no_color=app_state().no_color,
    )


@click.command("probe")
@click.argument("host", required=False, shell_complete=complete_hosts)
@click.option(
    "--topic",
    "-t",
    envvar="MANAGERCTL_TOPIC",
    required=True,
    help="The service's RPC topic (e.g. compute, conductor, hostinfo).",
    shell_complete=complete_topics,
)
@click.option(
    "--exchange",
    metavar="NAME",
    help="Control exchange the service listens on (default: control_exchange of the config, "
    "e.g. nova in nova.conf; else openstack). --all does not use it: broadcasts go to the "
    "TOPIC_fanout exchange.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="How long a service that consumes its queue has to answer before it counts as stuck.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=PING,
    show_default=True,
    help="ping: the base API ping (namespace baseapi, version 1.0); oslo_rpc_server_ping: "
    "oslo's own, for services run with rpc_ping_enabled = true.",
)
@click.option("--all", "probe_all", is_flag=True, help="Probe every service of the topic at once.")
@click.option(
    "--expect",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --all: how many services must answer (default: as many as consume the topic).",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing about the verdict: the exit code says it."
)
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    help="Output format (default: value, one line; table with --all). json gives an object "
    "(a list with --all).",
)
@click.option(
    "-c",
    "--column",
    "output_columns",
    multiple=True,
    metavar="COLUMN",
    help="Show only this column (repeatable).",
)
@click.option(
    "--sort-column",
    "output_sort_column",
    multiple=True,
    metavar="COLUMN",
    help="Sort rows by this column (repeatable).",
)
@click.option(
    "--sort-descending", "output_sort_descending", is_flag=True, help="Sort in descending order."
)
@click.pass_context
def probe(
    ctx: click.Context,
    host: str | None,
    topic: str,
    exchange: str | None,
    timeout: float,
    method: str,
    probe_all: bool,
    expect: int | None,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Prove that the service of TOPIC on HOST takes requests and answers them.

    Any answer means alive: a result, or a failure the service sends back (an oslo service
    without the base API answers UnsupportedVersion, one without rpc_ping_enabled answers
    NoSuchMethod to oslo_rpc_server_ping). HOST is the server name of the TOPIC.HOST queue
    (default: [DEFAULT] host of the config, which like nova's defaults to this machine's
    name). The service's own config file works as it is: --config-file /etc/nova/nova.conf.

    \b
    Exit status:
      0   alive: the service answered (the line shows the round-trip time)
      69  down: nobody consumes TOPIC.HOST (told at once), or the broker is unreachable
      75  stuck: the service consumes its queue but did not answer within --timeout
      77  the broker refused the credentials;  78  the config file is unreadable or invalid
    With --all: 0 when the expected number answered, 3 when only some did, 69 when none did.
    --quiet prints nothing for a verdict; errors that stop the probe from running at all
    (broker, credentials, config, usage) are still reported on stderr.

    \b
    Examples:
      managerctl --config-file /etc/nova/nova.conf probe --topic compute
      managerctl probe web01 --topic compute --exchange nova --timeout 5 --quiet
      managerctl probe web01 --topic conductor --method oslo_rpc_server_ping -f json
      managerctl probe --all --topic compute --exchange nova --expect 12
    """
    from .. import probe as probing

    output = _output(kwargs, probe_all)
    if probe_all and host:
        raise click.UsageError("give a HOST or --all, not both")
    if expect is not None and not probe_all:
        raise click.UsageError("--expect goes with --all")
    settings = app_state().settings
    client = _client(settings, timeout)
    with client:
        if probe_all:
            with waiting(f"probing every service of {topic}", enabled=not quiet):
                outcome = probing.probe_all(
                    client, topic, method=method, timeout=timeout, expect=expect
                )
            error = outcome.error
            if not quiet:
                rows = [answer.record() for answer in outcome.answers]
                # Data formats carry every field; the table only what a person scans.
                data = output.format in ("json", "yaml")
                render_list(rows, probing.RECORD_FIELDS if data else TABLE_COLUMNS, output)
        else:
            host = host or settings.host
            with waiting(f"probing {topic}.{host}", enabled=not quiet):
                result = probing.probe(
                    client, topic, host, exchange=exchange, method=method, timeout=timeout
                )
            error = result.error
            if not quiet:
                if output.format in ("json", "yaml"):
                    render_one(result.record(), output)
                else:
                    render_list([result.record()], LINE_COLUMNS, output)
    if error is not None:
        if quiet:
            ctx.exit(error.exit_code)
        raise error
