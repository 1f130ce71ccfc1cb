"""``managerctl config show | sample``."""

from __future__ import annotations

from typing import Any

import click

from ..redact import MASK, mask_url_passwords
from .common import app_state, output_from
from .output import output_options, render_list


@click.group()
def config() -> None:
    """Show the effective configuration or write a sample file."""


@config.command("show")
@output_options
def show(**kwargs: Any) -> None:
    """Show every option's effective value and where it came from (secrets masked).

    A service's own file (nova.conf, cinder.conf, or any file with a [database] or
    [keystone_authtoken] section, unless it has a [managerctl] section) sets only how to reach
    and speak to that service: transport_url, control_exchange, rpc_response_timeout,
    rpc_ping_enabled, enabled_backends and [oslo_messaging_rabbit]. What else it sets is listed
    as "ignored"; its host is the default HOST of probe, ping and call.
    """
    output = output_from(kwargs)
    settings = app_state().settings
    records = [_record(option, option.source) for option in settings.describe()]
    for option in settings.ignored:
        why = "the default HOST to probe" if option.name == "host" else "a service's option"
        records.append(_record(option, f"ignored from {option.source} ({why})"))
    render_list(records, ["group", "name", "value", "source"], output)


def _record(option: Any, source: str) -> dict[str, Any]:
    value = option.value
    if option.secret and value:
        value = mask_url_passwords(str(value)) if "://" in str(value) else MASK
    return {"group": option.group, "name": option.name, "value": value, "source": source}


@config.command("sample")
@click.option(
    "--output-file", "-o", type=click.Path(dir_okay=False), help="Write here, not to stdout."
)
def sample(output_file: str | None) -> None:
    """Write a commented sample config file (as oslo-config-generator --namespace managerctl)."""
    from oslo_config import cfg, generator

    # The generator itself, so the file is byte-for-byte what oslo-config-generator writes.
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    args = ["--namespace", "managerctl"]
    if output_file:
        args += ["--output-file", output_file]
    conf(args, project="managerctl", default_config_files=[], default_config_dirs=[])
    generator.generate(conf)
