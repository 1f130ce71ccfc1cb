"""The in-memory transport and manager_cli.testing stay off the CLI's paths (start-up time),
and only a memory:// URL brings them in."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import manager_cli

PACKAGE = Path(manager_cli.__file__).resolve().parent
TEST_ONLY = ("manager_cli.testing", "manager_cli.rpc.memory")


def _loaded_after(argv: list[str]) -> list[str]:
    code = textwrap.dedent(
        f"""\
        import sys
        from manager_cli.cli.main import main
        sys.argv = {["managerctl", *argv]!r}
        try:
            main()
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.startswith({TEST_ONLY!r})), file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    return result.stderr.strip().splitlines()[-1]


def test_help_and_a_broker_command_do_not_load_the_memory_transport() -> None:
    assert _loaded_after(["--help"]) == "[]"
    # A real command down to the transport: the broker is unreachable, exit 69.
    argv = ["--transport-url", "rabbit://127.0.0.1:1/", "call", "web01", "ping"]
    assert _loaded_after(argv) == "[]"


def test_only_get_transport_imports_the_memory_transport() -> None:
    importers = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "testing" or relative.name == "memory.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and (node.module.endswith("memory") or node.module.endswith("testing"))
            ):
                importers.append(str(relative))
    assert importers == ["rpc/__init__.py", "rpc/__init__.py"]
