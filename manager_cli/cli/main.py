"""The ``managerctl`` console script: global options, lazily loaded commands, error handling.

Each command group lives in its own module and is imported only when it runs, so ``--help`` and
every command pay only for what they use. Errors become one line on stderr and the exit code
their class owns (manager_cli.errors); a traceback only with ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from ..errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ManagerCtlError,
)
from ..redact import mask_url_passwords

if TYPE_CHECKING:
    from ..config import Settings

# command name -> "module:attribute" under manager_cli.cli, in the order --help lists them.
LAZY_COMMANDS: dict[str, str] = {
    "managers": "managers:managers",
    "hooks": "hooks:hooks",
    "periodic": "periodic:periodic",
    "run-periodic": "periodic:run_periodic",
    "call": "rpc:call",
    "ping": "rpc:ping",
    "probe": "probe:probe",
    "tap": "tap:tap",
    "capabilities": "capabilities:capabilities",
    "services": "services:services",
    "serve": "serve:serve",
    "config": "config_cmd:config",
    "completion": "completion:completion",
}

# One-line summaries, so --help lists commands without importing them.
SUMMARIES: dict[str, str] = {
    "managers": "List installed managers and show what one is.",
    "hooks": "Run a manager's lifecycle hooks in order.",
    "periodic": "List a manager's periodic tasks.",
    "run-periodic": "Run periodic tasks now, once.",
    "call": "Call (or cast) an RPC method of a service over AMQP.",
    "ping": "Ping one service, or every service of a topic, through the base RPC API.",
    "probe": "Liveness probe of any oslo RPC service: any answer means alive.",
    "tap": "Watch the requests sent to a topic, decoded (copies; the service is untouched).",
    "capabilities": "Gather and show service capabilities.",
    "services": "List the services seen, up or down by the age of their heartbeat.",
    "serve": "Run a manager as a long-running RPC service.",
    "config": "Show the effective configuration or write a sample file.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
}


def _epilog() -> str:
    lines = ["\b", "Exit codes:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)


@dataclass
class AppState:
    """Global options, and the settings loaded from them on first use."""

    config_files: tuple[str, ...] = ()
    config_dirs: tuple[str, ...] = ()
    transport_url: str | None = None
    debug: bool = False
    no_color: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            settings = load_settings(self.config_files, self.config_dirs)
            self._settings = settings.with_overrides({"transport_url": self.transport_url})
        return self._settings


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or completed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name, "")) for name in LAZY_COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    epilog=_epilog(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config-file",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="oslo.config file to read (repeatable); an existing nova.conf-style file works. "
    "Default: $MANAGERCTL_CONFIG_FILE.",
)
@click.option(
    "--config-dir",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Directory of *.conf files to read (repeatable). Default: $MANAGERCTL_CONFIG_DIR.",
)
@click.option(
    "--transport-url",
    metavar="URL",
    help="rabbit://user:pass@host:port/vhost (overrides $MANAGERCTL_TRANSPORT_URL and the "
    "config file).",
)
@click.option(
    "--debug",
    count=True,
    help="Show tracebacks (a remote failure's too) and debug logging; twice to add pika's.",
)
@click.option("--no-color", is_flag=True, help="Never use colour (NO_COLOR is honoured too).")
@click.version_option(package_name="managerctl", prog_name="managerctl")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: tuple[str, ...],
    config_dir: tuple[str, ...],
    transport_url: str | None,
    debug: int,
    no_color: bool,
) -> None:
    """Operate services built on the OpenStack Manager pattern."""
    # The MANAGERCTL_* variables are read by config.load_settings, not by click: that is what
    # records "environment" as their source (click's envvar= made them "command line") and keeps
    # a config file path with spaces in one piece (click splits a multiple option's variable).
    ctx.obj = AppState(config_file, config_dir, transport_url, bool(debug), no_color)
    import logging

    if debug:
        logging.basicConfig(
            level=logging.DEBUG,
            format="%(asctime)s %(process)d %(levelname)s %(name)s [-] %(message)s",
        )
        if debug < 2:
            # pika logs every frame of the connection at DEBUG (hundreds of lines per call),
            # which buries managerctl's own records; --debug --debug shows them too.
            logging.getLogger("pika").setLevel(logging.WARNING)
    elif ctx.invoked_subcommand != "serve":
        # A one-shot command reports a failed task or hook in its data and its exit code; the
        # library's log records (with tracebacks) would otherwise reach stderr through logging's
        # last-resort handler. They are for --debug. `serve` configures its own logging.
        logging.getLogger().addHandler(logging.NullHandler())


def _report(text: str) -> None:
    click.echo(f"managerctl: error: {mask_url_passwords(text)}", err=True)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn errors into exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = _debug_requested(args)
    try:
        result = cli.main(args=args, prog_name="managerctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        _report(exc.format_message())
        sys.exit(exc.exit_code if exc.exit_code else EXIT_USAGE)
    except (KeyboardInterrupt, click.Abort):
        click.echo("managerctl: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ManagerCtlError as exc:
        if debug:
            _print_traceback()
            remote = getattr(exc, "traceback", None)
            if remote:
                sys.stderr.write("remote traceback:\n" + mask_url_passwords(str(remote)) + "\n")
        _report(str(exc))
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); exit quietly as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:  # a bug: say so in one line, the traceback with --debug
        if debug:
            _print_traceback()
        _report(f"internal error: {type(exc).__name__}: {exc}; rerun with --debug for details")
        sys.exit(EXIT_INTERNAL)
    # Without standalone mode click returns the exit code of ctx.exit() (e.g. --help: 0).
    sys.exit(result if isinstance(result, int) else 0)


def _print_traceback() -> None:
    import traceback

    sys.stderr.write(mask_url_passwords(traceback.format_exc()))


if __name__ == "__main__":
    main()
