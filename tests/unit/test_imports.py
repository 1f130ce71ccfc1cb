"""The package's import structure: no import cycle, and every module imports on its own.

The graph counts every import, at module level or inside a function (a lazy import that closes
a cycle still ties the modules into one knot, and runs at a moment nobody chose); only imports
under ``if TYPE_CHECKING:`` are left out, since they never run. A submodule's import of its own
parent package is no edge: Python initialises the parent first.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import manager_cli

PACKAGE_DIR = Path(manager_cli.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ("manager_cli", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The module names an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    # ``from package import submodule`` loads the submodule too.
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
        while pending:
            for child in ast.iter_child_nodes(pending.pop()):
                if _is_type_checking(child):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for name in _imported(module, is_package, child):
                        parts = name.split(".")
                        for end in range(1, len(parts) + 1):
                            dependency = ".".join(parts[:end])
                            parent = module.startswith(dependency + ".")
                            if dependency in modules and dependency != module and not parent:
                                edges.add(dependency)
                pending.append(child)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_at_every_level():
    graph = import_graph(MODULES)
    # module level, relative
    assert "manager_cli.errors" in graph["manager_cli.rpc.wire"]
    # inside a function (the CLI's lazy imports)
    assert "manager_cli.service" in graph["manager_cli.cli.serve"]


def test_a_cycle_through_lazy_imports_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .c import g\n")
    (package / "c.py").write_text("import pkg.a\nfrom typing import TYPE_CHECKING\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    modules = {f"pkg.{name}": package / f"{name}.py" for name in "abcd"}
    modules["pkg"] = package / "__init__.py"
    assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycle_in_manager_cli():
    assert cycles(import_graph(MODULES)) == []


def test_names_imports_nothing():
    tree = ast.parse((PACKAGE_DIR / "names.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports == []


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Whatever module a program imports first, it imports (a cycle would leave a module
    half-initialised for one of the orders)."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'manager_cli']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
    )
    names = [name for name in MODULES if name != "manager_cli.__main__"]
    result = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_package_ships_no_test_rig_or_demo():
    """Throwaway RabbitMQ/PostgreSQL launchers and the demo script live under tests/ and
    scripts/: nothing in the wheel starts servers of its own."""
    shipped = [
        name
        for name in MODULES
        if name.rpartition(".")[2] in ("rabbitmq", "postgres", "_local", "demo")
    ]
    assert shipped == []
