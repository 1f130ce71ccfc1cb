"""Every ``managerctl`` command line in the README parses against the real command tree.

A README example with a flag that was renamed, or a subcommand that went away, fails here, not
in an operator's runbook. The examples that need real services behind them run for real in the
peers tier (``tests/peers``, against nova and cinder) and in the integration tests; this one
catches every line, including those that name hosts and files no test machine has.

The README's Python blocks run too: the manager example is served and called, and the
"Testing your manager" example runs under pytest as a manager author would run it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from manager_cli.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
# Shell variables and substitutions stand for a value of the operator's.
_SUBSTITUTIONS = [
    (re.compile(r'"\$\(hostname\)"|\$\(hostname\)'), "web01"),
    (re.compile(r'"\$[A-Za-z_]+"|\$\{?[A-Za-z_]+\}?'), "web01"),
]


def _code_blocks(text: str, languages: tuple[str, ...] = ("sh", "bash", "yaml")) -> list[str]:
    """The blocks in these languages (by default the shell and YAML ones: the unlabelled
    synopsis block uses placeholders)."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in languages:
                    blocks.append("\n".join(current))
                current = None
            continue
        if current is not None:
            current.append(line)
    return blocks


def readme_commands() -> list[list[str]]:
    """The argument lists of every managerctl invocation in the README's code blocks."""
    commands = []
    for block in _code_blocks(README.read_text()):
        block = block.replace("\\\n", " ")
        # YAML exec arrays, over several lines: ["managerctl", "--config-file", ...]
        for array in re.findall(r'\["managerctl",(.*?)\]', block, flags=re.S):
            commands.append(re.findall(r'"([^"]*)"', array))
        block = re.sub(r'\["managerctl",(.*?)\]', "", block, flags=re.S)
        for line in block.splitlines():
            line = line.split(" # ")[0]
            if line.lstrip().startswith("#"):
                continue
            for match in re.finditer(r"(?:^|[\s(|;&])managerctl\s+([^|;&)<>\n]*)", line):
                rest = re.split(r"\s\d*$", match.group(1))[0]  # the 2 of 2>/dev/null
                for pattern, value in _SUBSTITUTIONS:
                    rest = pattern.sub(value, rest)
                try:
                    words = shlex.split(rest)
                except ValueError:
                    continue
                if words:
                    commands.append(words)
    return commands


def _parse(words: list[str]) -> None:
    """Parse as click would run it, down to the leaf command, without running anything."""
    context = cli.make_context("managerctl", list(words), resilient_parsing=False)
    command: click.Command = cli
    args = _rest(context)
    while isinstance(command, click.Group) and args:
        sub_name, sub_command, args = command.resolve_command(context, args)
        assert sub_command is not None, f"no such command {sub_name!r}"
        context = sub_command.make_context(sub_name, args, parent=context)
        command = sub_command
        args = _rest(context) if isinstance(command, click.Group) else []


def _rest(context: click.Context) -> list[str]:
    # click 8.2 keeps a group's unparsed words in args; older ones split off protected_args.
    protected = context.__dict__.get("_protected_args")
    if protected is None:
        protected = context.__dict__.get("protected_args") or []
    return list(protected) + list(context.args)


COMMANDS = readme_commands()


def test_the_readme_has_examples_to_check() -> None:
    # Guards the extraction itself: a regex that found nothing would pass every case below.
    assert len(COMMANDS) >= 20
    assert any("probe" in words and "--quiet" in words for words in COMMANDS)
    assert any(words[:1] == ["--config-file"] for words in COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w)[:60] for w in COMMANDS])
def test_readme_command_parses(words: list[str]) -> None:
    try:
        _parse(words)
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.UsageError as exc:
        pytest.fail(f"README example `managerctl {' '.join(words)}` does not parse: {exc}")


PYTHON_BLOCKS = [block + "\n" for block in _code_blocks(README.read_text(), ("python",))]


def test_the_readme_manager_example_is_a_manager_that_serves() -> None:
    # The first Python block is the manager a new user copies: it must define a manager whose
    # RPC method answers and whose periodic task publishes, served as `managerctl serve` would.
    from manager_cli.testing import served

    (example,) = [block for block in PYTHON_BLOCKS if "class ComputeManager" in block]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    manager_class = namespace["ComputeManager"]
    with served(manager_class, topic="compute", host="c1") as client:
        assert client.call({}, "reboot", topic="compute", args={"instance_id": "i-1"}) is None
    manager = manager_class(host="c1")
    manager.report_free_ram(None)
    assert manager.last_capabilities == [{"free_ram_mb": 2048}]


def test_the_readme_testing_example_passes_under_pytest(tmp_path: Path) -> None:
    # "Testing your manager" is a test file a manager author copies: run it as they would.
    import subprocess
    import sys

    (example,) = [block for block in PYTHON_BLOCKS if "manager_cli.testing" in block]
    (tmp_path / "test_greeter.py").write_text(example)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout, run.stdout


def test_the_readme_demo_runs_to_the_end() -> None:
    # The README's first command (`bash scripts/demo.sh` = set-up, then scripts/demo.py): the
    # demo itself, on a throwaway broker of its own, must end well and leave nothing running.
    import subprocess
    import sys

    demo = README.parent / "scripts" / "demo.py"
    run = subprocess.run(
        [sys.executable, str(demo)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=README.parent,
        start_new_session=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "demo complete." in out, out[-3000:]
    assert "Traceback" not in out + run.stderr, out[-3000:]
    # What it shows is what the README says it shows: an RPC round trip and the exit codes.
    assert "(exit 1)" in out and "(exit 69)" in out and "(service exited 0)" in out, out[-3000:]
