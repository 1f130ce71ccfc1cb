#!/usr/bin/env bash
# The demo command: set up (.venv, package, rabbitmq-server), then run the demo.
# Arguments go to scripts/demo.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_setup.sh
. scripts/_setup.sh
managerctl_setup

_say "python scripts/demo.py $*"
exec .venv/bin/python scripts/demo.py "$@"
