"""``managerctl probe``: is an oslo.messaging RPC service alive? Any answer says yes.

Made for liveness probes and monitoring checks, so it starts fast: the library and pika are
imported when the command runs, oslo.config only with a config file, rich only for a table on a
terminal (the default output is one line of values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..ops.probe import AUTO, DEFAULT_TIMEOUT, METHODS
from .common import app_state
from .complete import complete_hosts, complete_topics
from .output import OutputOptions, output_options_with, render_list, render_one
from .progress import waiting

if TYPE_CHECKING:
    from ..config import Settings

# The one line a single probe prints by default, and the columns of the --all table.
LINE_COLUMNS = ["host", "topic", "verdict", "rtt_ms"]
TABLE_COLUMNS = ["host", "service", "verdict", "rtt_ms", "answer"]


def default_hosts(settings: Settings, topic: str) -> list[str]:
    """The servers a probe without HOST checks: this host's, one per cinder backend."""
    from ..families import family_of_topic

    family = family_of_topic(topic)
    backends = list(settings.enabled_backends or [])
    if family is not None and topic in family.backend_topics and backends:
        # cinder-volume runs one server per backend, named host@backend (PEERS.md).
        return [f"{settings.service_host}@{backend}" for backend in backends]
    return [settings.service_host]


def _output(kwargs: dict[str, Any], probe_all: bool) -> OutputOptions:
    return OutputOptions(
        format=kwargs.pop("output_format") or ("table" if probe_all else "value"),
        columns=tuple(kwargs.pop("output_columns") or ()),
        sort_column=tuple(kwargs.pop("output_sort_column") or ()),
        sort_descending=bool(kwargs.pop("output_sort_descending")),
        no_color=app_state().no_color,
    )


@click.command("probe")
@click.argument("hosts", nargs=-1, metavar="[HOST]...", shell_complete=complete_hosts)
@click.option(
    "--hosts-file",
    metavar="FILE",
    help="Probe every host named in FILE (one per line, # comments; - for standard input), "
    "all at once over one connection.",
)
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
    default=AUTO,
    show_default=True,
    help="auto: what the service answers without an ERROR in its log (ping for nova and "
    "managerctl; oslo_rpc_server_ping where the config says rpc_ping_enabled = true; quiet "
    "for cinder). ping: the base API ping (namespace baseapi). oslo_rpc_server_ping: oslo's "
    "own. quiet: a method oslo logs at DEBUG only, at the topic's version (--version).",
)
@click.option(
    "--version",
    "api_version",
    metavar="X.Y",
    help="API version of the probe request (quiet: default the topic's, e.g. 3.0 for "
    "cinder-volume).",
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
@output_options_with(
    format_default=None,
    format_help="Output format (default: value, one line; table with --all). json gives an "
    "object (a list with --all).",
    wide=False,
)
@click.pass_context
def probe(
    ctx: click.Context,
    hosts: tuple[str, ...],
    hosts_file: str | None,
    topic: str,
    exchange: str | None,
    timeout: float,
    method: str,
    api_version: str | None,
    probe_all: bool,
    expect: int | None,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Prove that the service of TOPIC on each HOST takes requests and answers them.

    Any answer means alive: a result, or a failure the service sends back. HOST is the server
    name of the TOPIC.HOST queue (default: [DEFAULT] host of the config, which like nova's
    defaults to this machine's name; for cinder-volume, HOST@BACKEND for each of the
    config's enabled_backends). Several HOSTs, or --hosts-file, are probed at once over one
    connection, one line each. The service's own config file works as it is:
    --config-file /etc/nova/nova.conf (its exchange, nova, is known without being told).

    \b
    Exit status:
      0   alive: every service answered (the line shows the round-trip time)
      3   partial: some of several hosts answered, not all
      69  down: nobody consumes TOPIC.HOST (told at once), or the broker is unreachable
      75  stuck: the service consumes its queue but did not answer within --timeout
      77  the broker refused the credentials;  78  the config file is unreadable or invalid
    With --all: 0 when the expected number answered, 3 when only some did, 69 when nobody
    consumes the topic, 75 when consumers exist but none answered. --quiet prints nothing for
    a verdict; errors that stop the probe from running at all (broker, credentials, config,
    usage) are still reported on stderr.

    \b
    Examples:
      managerctl --config-file /etc/nova/nova.conf probe --topic compute
      managerctl --config-file /etc/cinder/cinder.conf probe --topic cinder-volume
      managerctl probe web01 web02 --topic compute --exchange nova --timeout 5 --quiet
      managerctl probe --hosts-file computes.txt --topic compute --exchange nova
      managerctl probe web01 --topic conductor --method oslo_rpc_server_ping -f json
      managerctl probe --all --topic compute --exchange nova --expect 12
    """
    from ..ops import probe as probing
    from ..ops.clients import one_shot_client
    from ..ops.fleet import read_hosts_file

    output = _output(kwargs, probe_all)
    named = list(hosts) + (read_hosts_file(hosts_file) if hosts_file else [])
    if probe_all and named:
        raise click.UsageError("give HOSTs or --all, not both")
    if expect is not None and not probe_all:
        raise click.UsageError("--expect goes with --all")
    settings = app_state().settings
    if method == AUTO:
        method = probing.choose_method(topic, rpc_ping_enabled=bool(settings.rpc_ping_enabled))
    client = one_shot_client(settings, timeout)
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
            targets = named or default_hosts(settings, topic)
            shown = targets[0] if len(targets) == 1 else f"{len(targets)} hosts"
            with waiting(f"probing {topic}.{shown}", enabled=not quiet):
                results = probing.probe_hosts(
                    client,
                    topic,
                    targets,
                    exchange=exchange,
                    method=method,
                    version=api_version,
                    timeout=timeout,
                )
            error = probing.hosts_error(results, topic)
            if not quiet:
                records = [result.record() for result in results]
                if output.format in ("json", "yaml"):
                    if len(records) == 1:
                        render_one(records[0], output)
                    else:
                        render_list(records, probing.RECORD_FIELDS, output)
                else:
                    render_list(records, LINE_COLUMNS, output)
    if error is not None:
        if quiet:
            ctx.exit(error.exit_code)
        raise error
