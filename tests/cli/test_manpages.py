"""Man pages: committed pages match the command tree, cover every command, render cleanly.

Rendering needs man-db and groff (apt-get install -y man-db groff-base); without them the
rendering tests fail rather than skip, so CI cannot lose them silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from manager_cli.cli import main as cli_main
from manager_cli.cli.manpage import help_blocks, inline, render_pages
from manager_cli.errors import EXIT_CODES

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
GENERATE = REPO / "scripts" / "gen-completions-and-man.py"
PAGES = sorted(MAN.glob("*.1"))


def command_paths(group: click.Group, ctx: click.Context) -> list[str]:
    """Every command path under ``group``, found the way the generator must find them."""
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{ctx.command_path} {name}"
        paths.append(path)
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=name, parent=ctx)
            paths += command_paths(command, sub_ctx)
    return paths


def render(page: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("man") is None:
        pytest.fail("man pages need man-db to check: apt-get install -y man-db", pytrace=False)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    return subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_committed_pages_match_what_the_command_tree_generates(tmp_path: Path) -> None:
    subprocess.run([sys.executable, GENERATE, "--outdir", tmp_path], check=True, timeout=120)
    fresh = {p.name: p.read_text() for p in (tmp_path / "man").glob("*.1")}
    committed = {p.name: p.read_text() for p in PAGES}
    hint = f"man/ is stale; run {GENERATE.relative_to(REPO)}"
    assert sorted(committed) == sorted(fresh), hint
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"{hint} ({', '.join(stale)})"


def test_every_command_and_subcommand_has_a_page() -> None:
    ctx = click.Context(cli_main.cli, info_name="managerctl")
    expected = {"managerctl.1"} | {
        path.replace(" ", "-") + ".1" for path in command_paths(cli_main.cli, ctx)
    }
    assert {"managerctl-call.1", "managerctl-managers-show.1"} <= expected
    assert {p.name for p in PAGES} == expected


def test_a_command_registered_later_gets_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lazily loaded commands are not in group.commands: the walk must use get_command.
    monkeypatch.setitem(cli_main.LAZY_COMMANDS, "services", "managers:managers")
    pages = render_pages(cli_main.cli)
    assert {"managerctl-services.1", "managerctl-services-show.1"} <= set(pages)
    assert "managerctl\\-services\\-show \\- " in pages["managerctl-services-show.1"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_without_warnings(page: Path) -> None:
    result = render(page)
    assert result.returncode == 0
    assert result.stderr == "", result.stderr
    assert result.stdout.isascii(), "options and examples must copy-paste as typed"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_has_the_standard_sections(page: Path) -> None:
    text = page.read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"):
        assert f"\n.SH {section}\n" in text
    assert "\n.SH FILES\n" in text
    for code, _ in EXIT_CODES:
        assert f".TP\n\\fB{code}\\fR\n" in text
    for variable in (
        "MANAGERCTL_TRANSPORT_URL",
        "MANAGERCTL_CONFIG_FILE",
        "MANAGERCTL_CONFIG_DIR",
        "MANAGERCTL_<OPTION>",
        "NO_COLOR",
    ):
        assert f"\\fB{variable}\\fR" in text
    if page.name != "managerctl.1":
        assert "\n.SH SEE ALSO\n\\fBmanagerctl\\fR(1)" in text


def test_call_page_documents_arguments_and_examples() -> None:
    text = render(MAN / "managerctl-call.1").stdout
    assert "managerctl [GLOBAL OPTIONS] call [OPTIONS] HOST METHOD [KEY=VALUE]..." in text
    assert "ARGUMENTS" in text and "HOST is the server name" in text
    assert "EXAMPLES" in text
    assert "managerctl call web01 echo value=hello --topic hostinfo" in text
    assert "MANAGERCTL_TOPIC" in text  # the --topic option's own variable


def test_root_page_lists_every_command_with_its_page() -> None:
    text = (MAN / "managerctl.1").read_text()
    for name in cli_main.LAZY_COMMANDS:
        escaped = name.replace("-", "\\-")
        assert f".TP\n\\fB{escaped}\\fR\n" in text
        assert f"\\fBmanagerctl\\-{escaped}\\fR(1)" in text


def test_help_blocks_keep_click_verbatim_paragraphs() -> None:
    blocks = help_blocks("First line.\n\n\b\nExamples:\n  a -b\n  c\n\f\nhidden")
    assert [(b.verbatim, b.heading) for b in blocks] == [(False, ""), (True, "examples")]
    assert blocks[1].lines == ("Examples:", "  a -b", "  c")


def test_inline_escapes_roff_and_sets_code_in_bold() -> None:
    assert inline(".starts with a dot") == "\\&.starts with a dot"
    assert inline("see `managers list`") == "see \\fBmanagers list\\fR"
    assert inline("a\\b 'q' -x") == "a\\eb \\(aqq\\(aq \\-x"
