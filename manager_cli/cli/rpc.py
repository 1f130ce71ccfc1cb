"""``managerctl call`` and ``managerctl ping``: RPC over AMQP, oslo.messaging-compatible."""

from __future__ import annotations

import time
from typing import Any

import click

from ..errors import (
    ManagerCtlError,
    PartialResultError,
    RemoteError,
    UnavailableError,
)
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


def _reply_host(reply: Any) -> str | None:
    result = reply.result
    return str(result["host"]) if isinstance(result, dict) and result.get("host") else None


def _settings_and_client(timeout: float | None) -> tuple[Any, Any]:
    """Settings and a one-shot client (its reply queue goes away with the process)."""
    from ..rpc.client import RPCClient
    from ..rpc.transport import from_settings

    settings = app_state().settings
    url, options = from_settings(settings)
    client = RPCClient(
        url,
        options=options,
        timeout=timeout or settings.rpc_response_timeout,
        exclusive=True,
    )
    return settings, client


def _as_remote_error(exc: BaseException) -> BaseException:
    """A remote failure re-raised as its own class, reported as exit 1 with its first line.

    Only what wire.deserialize_failure rebuilt (it sets ``remote_traceback``) came from the
    service; any other exception is local (a bug, or a lower-layer error nobody mapped) and is
    returned as it is, so it reads as an internal error (exit 70), never as the remote method
    having raised (exit 1).
    """
    if isinstance(exc, ManagerCtlError) or not hasattr(exc, "remote_traceback"):
        return exc
    first_line = (str(exc).splitlines() or [""])[0]
    return RemoteError(type(exc).__name__, first_line, getattr(exc, "remote_traceback", None))


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

    args = merge_args(arguments, args_json)
    output = OutputOptions(format=output_format, no_color=app_state().no_color)
    server = None if host == ANY_HOST else host
    _, client = _settings_and_client(timeout)
    with client:
        if cast or fanout:
            client.cast(
                get_admin_context(),
                method,
                topic=topic,
                server=None if fanout else server,
                fanout=fanout,
                args=args,
                version=api_version,
                namespace=namespace,
                exchange=exchange,
            )
            return
        client.check_consumers = not wait_for_consumer
        try:
            with waiting(f"waiting for {method} on {topic}.{host}"):
                result = client.call(
                    get_admin_context(),
                    method,
                    topic=topic,
                    server=server,
                    args=args,
                    version=api_version,
                    namespace=namespace,
                    exchange=exchange,
                    timeout=timeout,
                )
        except Exception as exc:
            raise _as_remote_error(exc) from None
    _render_result(result, output)


PING_COLUMNS = ["host", "service", "arg", "rtt_ms", "outcome", "error"]


@click.command("ping")
@click.argument("host", required=False, shell_complete=complete_hosts)
@_target_options
@click.option("--all", "ping_all", is_flag=True, help="Ping every server of the topic.")
@click.option("--expect", type=int, metavar="N", help="With --all: stop after N answers.")
@click.option("--expect-hosts", metavar="H1,H2", help="With --all: the hosts that must answer.")
@output_options
def ping(
    host: str | None,
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
    """Ping the service of TOPIC on HOST (or every one, --all) through the base RPC API.

    Exit 0 when every expected host answered, 3 when only some did, 69 when none did.
    """
    from ..context import get_admin_context
    from ..manager import BASE_API_NAMESPACE, BASE_API_VERSION

    output = output_from(kwargs)
    if bool(host) == ping_all:
        raise click.UsageError("give a HOST or --all")
    wanted_hosts = [h for h in (expect_hosts or "").split(",") if h]
    _, client = _settings_and_client(timeout)
    namespace = namespace or BASE_API_NAMESPACE
    with client:
        if not ping_all:
            started = time.monotonic()
            try:
                with waiting(f"pinging {topic}.{host}"):
                    result = client.call(
                        get_admin_context(),
                        "ping",
                        topic=topic,
                        server=host,
                        args={"arg": None},
                        version=api_version or BASE_API_VERSION,
                        namespace=namespace,
                        exchange=exchange,
                        timeout=timeout,
                    )
            except Exception as exc:
                raise _as_remote_error(exc) from None
            rtt = (time.monotonic() - started) * 1000
            row = {
                "host": result.get("host", host) if isinstance(result, dict) else host,
                "service": (result or {}).get("service") if isinstance(result, dict) else None,
                "arg": result.get("arg") if isinstance(result, dict) else result,
                "rtt_ms": round(rtt, 2),
                "outcome": "ok",
                "error": None,
            }
            render_list([row], PING_COLUMNS, output)
            return
        expected = len(wanted_hosts) if wanted_hosts else expect

        def all_wanted_answered(replies: list[Any]) -> bool:
            answered = {_reply_host(reply) for reply in replies}
            return all(host in answered for host in wanted_hosts)

        with waiting(f"gathering answers from every server of {topic}"):
            replies = client.broadcast_call(
                get_admin_context(),
                "ping",
                topic=topic,
                args={"arg": None},
                version=api_version or BASE_API_VERSION,
                namespace=namespace,
                timeout=timeout or DEFAULT_GATHER_TIMEOUT,
                expect=None if wanted_hosts else expected,
                stop_when=all_wanted_answered if wanted_hosts else None,
            )
    rows = []
    for reply in replies:
        result = reply.result if isinstance(reply.result, dict) else {}
        rows.append(
            {
                "host": _reply_host(reply),
                "service": result.get("service"),
                "arg": result.get("arg"),
                "rtt_ms": round(reply.elapsed * 1000, 2),
                "outcome": "ok" if reply.failure is None else "failed",
                "error": None if reply.failure is None else str(reply.failure).splitlines()[0],
            }
        )
    missing = sorted(set(wanted_hosts) - {row["host"] for row in rows})
    rows += [
        {"host": host, "service": None, "arg": None, "rtt_ms": None, "outcome": "missing"}
        for host in missing
    ]
    render_list(rows, PING_COLUMNS, output)
    answered = len(rows) - len(missing)
    if answered == 0:
        raise UnavailableError(
            f"no server of topic {topic} answered within the timeout",
            hint="is the service running, and are --topic and --exchange right?",
        )
    if missing:
        raise PartialResultError(f"{answered} servers answered; missing: {', '.join(missing)}")
    if expected is not None and answered < expected:
        raise PartialResultError(f"{answered} of {expected} expected servers answered")
