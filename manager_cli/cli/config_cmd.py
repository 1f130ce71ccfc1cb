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
    """Show every option's effective value and where it came from (secrets masked)."""
    output = output_from(kwargs)
    records = []
    for option in app_state().settings.describe():
        value = option.value
        if option.secret and value:
            value = mask_url_passwords(str(value)) if "://" in str(value) else MASK
        records.append(
            {"group": option.group, "name": option.name, "value": value, "source": option.source}
        )
    render_list(records, ["group", "name", "value", "source"], output)


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
