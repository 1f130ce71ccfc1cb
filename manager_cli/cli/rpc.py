"""``managerctl call`` and ``managerctl ping``: RPC over AMQP, oslo.messaging-compatible."""

from __future__ import annotations

from typing import Any

import click

from ..errors import remote_error_from
from .arguments import merge_args
from .common import app_state, output_from
from .complete import (
    complete_call_hosts,
    complete_hosts,
    complete_rpc_arguments,
    complete_rpc_methods,
    complete_topics,
)
from .output import OutputOptions, output_options, render_list, render_one
from .progress import waiting

ANY_HOST = "-"
# How long a broadcast (ping --all) gathers answers when neither --timeout nor --expect says.
DEFAULT_GATHER_TIMEOUT = 5.0


def _settings_and_client(timeout: float | None) -> tuple[Any, Any]:
    """Settings and a one-shot client (its reply queue goes away with the process)."""
    from ..ops.clients import one_shot_client

    settings = app_state().settings
    return settings, one_shot_client(settings, timeout)


def _version_hint(exc: BaseException, topic: str, asked: str | None) -> str | None:
    """Say what to try when the dispatcher found no method or version for the request."""
    kind = getattr(exc, "exc_type", None)
    if kind not in ("NoSuchMethod", "UnsupportedVersion"):
        return None
    from ..families import default_version

    known = default_version(topic)
    if asked is None:
        shown = known or "1.0"
        extra = f" (topic {topic} speaks {known})" if known else ""
        return (
            f"it was asked at the default version {shown}{extra}; if the service serves the "
            "method at another version or namespace, pass --version X.Y / --namespace"
        )
    return "check the method name, --version and --namespace (managerctl managers show NAME)"


def _render_result(result: Any, output: OutputOptions) -> None:
    if output.format == "table" and isinstance(result, dict):
        render_one(result, output)
    elif (
        output.format == "table"
        and isinstance(result, list)
        and all(isinstance(item, dict) for item in result)
        and result
    ):
        render_list(result, list(result[0]), output)
    elif output.format in ("value", "table") and not isinstance(result, (dict, list)):
        output.out.write(("" if result is None else str(result)) + "\n")
    else:
        import json

        if output.format == "yaml":
            import yaml

            output.out.write(yaml.safe_dump(result, sort_keys=False))
        else:
            output.out.write(json.dumps(result, indent=2, default=str) + "\n")


def _target_options(function: Any) -> Any:
    decorators = [
        click.option(
            "--topic",
            "-t",
            envvar="MANAGERCTL_TOPIC",
            required=True,
            help="The service's RPC topic (e.g. hostinfo, compute).",
            shell_complete=complete_topics,
        ),
        click.option("--exchange", metavar="NAME", help="Control exchange (default: config)."),
        click.option("--version", "api_version", metavar="X.Y", help="RPC API version to ask."),
        click.option("--namespace", metavar="NS", help="RPC namespace of the method."),
        click.option(
            "--timeout", type=float, metavar="SECONDS", help="Reply timeout (default: config)."
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@click.command("call")
@click.argument("host", shell_complete=complete_call_hosts)
@click.argument("method", shell_complete=complete_rpc_methods)
@click.argument(
    "arguments", nargs=-1, metavar="[KEY=VALUE]...", shell_complete=complete_rpc_arguments
)
@_target_options
@click.option("--args-json", metavar="JSON", help="Arguments as one JSON object.")
@click.option("--cast", "cast", is_flag=True, help="Send without waiting for a result.")
@click.option("--fanout", is_flag=True, help="Cast to every server of the topic.")
@click.option(
    "--wait-for-consumer",
    is_flag=True,
    help="Do not fail at once when nobody consumes the target; wait out the timeout.",
)
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["json", "table", "yaml", "value"]),
    default="json",
    show_default=True,
    help="How to print the result.",
)
def call(
    host: str,
    method: str,
    arguments: tuple[str, ...],
    topic: str,
    exchange: str | None,
    api_version: str | None,
    namespace: str | None,
    timeout: float | None,
    args_json: str | None,
    cast: bool,
    fanout: bool,
    wait_for_consumer: bool,
    output_format: str,
) -> None:
    """Call METHOD on the service of TOPIC on HOST and print its result.

    HOST is the server name of the TOPIC.HOST queue, or - for any server of the topic.
    Values are JSON (42, true, null, [1,2], {"a":1}) or else plain strings.

    \b
    Examples:
      managerctl call web01 echo value=hello --topic hostinfo
      managerctl call web01 get_facts --topic hostinfo -f table
      managerctl call - publish_service_capabilities --topic hostinfo --fanout
    """
    from ..context import get_admin_context
    from ..families import default_version

    args = merge_args(arguments, args_json)
    output = OutputOptions(format=output_format, no_color=app_state().no_color)
    server = None if host == ANY_HOST else host
    asked_version = api_version
    if api_version is None and namespace is None:
        # A known family's endpoints answer only their own major (cinder: 3.x).
        api_version = default_version(topic)
    from ..rpc.target import Target

    target = Target(
        topic,
        server=None if fanout else server,
        exchange=exchange,
        namespace=namespace,
        version=api_version,
        fanout=fanout,
    )
    _, client = _settings_and_client(timeout)
    with client:
        if cast or fanout:
            client.cast(get_admin_context(), method, target=target, args=args)
            return
        client.check_consumers = not wait_for_consumer
        try:
            with waiting(f"waiting for {method} on {topic}.{host}"):
                result = client.call(
                    get_admin_context(), method, target=target, args=args, timeout=timeout
                )
        except Exception as exc:
            raise remote_error_from(exc, _version_hint(exc, topic, asked_version)) from None
    _render_result(result, output)


@click.command("ping")
@click.argument("hosts", nargs=-1, metavar="[HOST]...", shell_complete=complete_hosts)
@click.option(
    "--hosts-file",
    metavar="FILE",
    help="Ping every host named in FILE (one per line, # comments; - for standard input).",
)
@_target_options
@click.option("--all", "ping_all", is_flag=True, help="Ping every server of the topic.")
@click.option(
    "--expect",
    type=int,
    metavar="N",
    help="With --all: how many must answer (default: as many as consume the topic).",
)
@click.option(
    "--expect-hosts",
    metavar="H1,H2",
    help="With --all: the hosts that must answer, each pinged by name (works against oslo "
    "services too, whose answers carry no host).",
)
@output_options
def ping(
    hosts: tuple[str, ...],
    hosts_file: str | None,
    topic: str,
    exchange: str | None,
    api_version: str | None,
    namespace: str | None,
    timeout: float | None,
    ping_all: bool,
    expect: int | None,
    expect_hosts: str | None,
    **kwargs: Any,
) -> None:
    """Ping the service of TOPIC on each HOST (or every one, --all) through the base RPC API.

    Several HOSTs, or --hosts-file, are pinged at once over one connection, one row each.
    rtt_ms is the time from the request's publication to its answer.

    \b
    Exit status:
      0   every expected host answered
      1   only failures came back
      3   partial: some expected hosts answered, not all (the rows say which and why)
      69  nobody consumes the target queues
      75  consumers exist but no answer came in time
    """
    from ..context import get_admin_context
    from ..ops import ping as pinging
    from ..ops.fleet import read_hosts_file

    output = output_from(kwargs)
    named = list(hosts) + (read_hosts_file(hosts_file) if hosts_file else [])
    wanted = [h.strip() for h in (expect_hosts or "").split(",") if h.strip()]
    if ping_all and named:
        raise click.UsageError("give HOSTs or --all, not both")
    if not ping_all and not named:
        raise click.UsageError("give a HOST, --hosts-file or --all")
    if (expect is not None or wanted) and not ping_all:
        raise click.UsageError("--expect and --expect-hosts go with --all")
    _, client = _settings_and_client(timeout)
    wait = timeout or (DEFAULT_GATHER_TIMEOUT if ping_all and not wanted else None)
    wait = wait or client.timeout
    with client:
        targets = wanted or named
        if targets:
            with waiting(f"pinging {topic} on {len(targets)} host(s)"):
                rows, error = pinging.ping_hosts(
                    client,
                    get_admin_context(),
                    topic,
                    targets,
                    exchange=exchange,
                    version=api_version,
                    namespace=namespace,
                    timeout=wait,
                )
        else:
            with waiting(f"gathering answers from every server of {topic}"):
                rows, error = pinging.ping_all(
                    client,
                    get_admin_context(),
                    topic,
                    version=api_version,
                    namespace=namespace,
                    timeout=wait,
                    expect=expect,
                )
    render_list(rows, pinging.COLUMNS, output)
    if error is not None:
        raise error
