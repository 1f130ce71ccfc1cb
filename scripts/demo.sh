#!/usr/bin/env bash
# The demo command: set up (.venv, package, rabbitmq-server), then run the demo.
# Arguments go to `python -m manager_cli.demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_setup.sh
. scripts/_setup.sh
managerctl_setup

_say "python -m manager_cli.demo $*"
exec .venv/bin/python -m manager_cli.demo "$@"
