#!/usr/bin/env python3
"""Regenerate completions/ and man/ from the managerctl command tree.

    .venv/bin/python scripts/gen-completions-and-man.py            # rewrite them in the repo
    .venv/bin/python scripts/gen-completions-and-man.py --check    # exit 1 if they are stale
    .venv/bin/python scripts/gen-completions-and-man.py --outdir D # write D/completions, D/man

Run it after adding or changing a command; tests/cli/test_completion.py and test_manpages.py
fail until the committed files match what the command tree generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate() -> dict[str, str]:
    """``{"completions/managerctl.bash": text, "man/managerctl.1": text, ...}``."""
    from manager_cli.cli.completion import COMPLETION_FILES, completion_script
    from manager_cli.cli.main import cli
    from manager_cli.cli.manpage import render_pages

    files = {
        f"completions/{name}": completion_script(shell) for shell, name in COMPLETION_FILES.items()
    }
    files.update({f"man/{name}": text for name, text in render_pages(cli).items()})
    return files


def generated_paths(outdir: Path) -> set[str]:
    """The generated files present under ``outdir`` (READMEs and the like are not generated)."""
    from manager_cli.cli.completion import COMPLETION_FILES

    found = {f"man/{p.name}" for p in (outdir / "man").glob("*.1")}
    found |= {
        f"completions/{name}"
        for name in COMPLETION_FILES.values()
        if (outdir / "completions" / name).exists()
    }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT, help="default: the repository")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    options = parser.parse_args()

    files = generate()
    if options.check:
        stale = sorted(
            path
            for path in set(files) | generated_paths(options.outdir)
            if not (options.outdir / path).exists()
            or (options.outdir / path).read_text(encoding="utf-8") != files.get(path)
        )
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print(f"run: {sys.executable} {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0

    for path in generated_paths(options.outdir) - set(files):
        (options.outdir / path).unlink()  # a command that no longer exists
    for path, text in sorted(files.items()):
        target = options.outdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files under {options.outdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
