#!/usr/bin/env bash
# The test command: set up (.venv, package, rabbitmq-server), then ruff, mypy and pytest.
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/unit -q
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_setup.sh
. scripts/_setup.sh
managerctl_setup --for-tests

_say "ruff check ."
ruff_rc=0
.venv/bin/ruff check . || ruff_rc=$?

_say "mypy manager_cli"
mypy_rc=0
.venv/bin/mypy manager_cli || mypy_rc=$?

_say "pytest $*"
pytest_rc=0
.venv/bin/pytest "$@" || pytest_rc=$?

if [ "$ruff_rc" -ne 0 ]; then
    _say "ruff failed (exit $ruff_rc)"
fi
if [ "$mypy_rc" -ne 0 ]; then
    _say "mypy failed (exit $mypy_rc)"
fi
if [ "$pytest_rc" -ne 0 ]; then
    _say "pytest failed (exit $pytest_rc)"
    exit "$pytest_rc"
fi
if [ "$ruff_rc" -ne 0 ]; then
    exit "$ruff_rc"
fi
exit "$mypy_rc"
