# shellcheck shell=bash
# Shared set-up for scripts/test.sh and scripts/demo.sh. Source it from the repository
# root, then call `managerctl_setup`. On a fresh Debian machine with only Python 3 it:
#   - creates .venv (installing python3-venv with apt if `python3 -m venv` cannot),
#   - installs the package with its test extras (skipped while pyproject.toml is unchanged),
#   - installs rabbitmq-server with apt when it is not installed,
#   - installs postgresql with apt when it is not installed (the capabilities store tests),
#     and zsh, fish and tmux (completion tests in real shells, views in a real terminal).
# Progress goes to stderr. Set PYTHON to use another interpreter than python3.

_say() { printf '==> %s\n' "$*" >&2; }
_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _die "need root for: $* (not root and no sudo)"
    fi
}

_apt_install() {
    command -v apt-get >/dev/null 2>&1 || _die "apt-get not found; install by hand: $*"
    _say "installing $* (apt-get)"
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

_have_rabbitmq() {
    command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ]
}

_have_postgres() {
    # Debian's server binaries live in /usr/lib/postgresql/<version>/bin, off the PATH.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}

_venv_ok() {
    [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys' >/dev/null 2>&1
}

_make_venv() {
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || _die "$python not found: install Python 3.10 or newer"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        _die "$python is $("$python" -V 2>&1); managerctl needs Python 3.10 or newer"
    _say "creating .venv ($("$python" -V 2>&1))"
    if ! "$python" -m venv --clear .venv >/dev/null 2>&1; then
        # Debian ships venv/ensurepip separately from python3.
        _apt_install python3-venv
        "$python" -m venv --clear .venv >&2
    fi
}

managerctl_setup() {
    [ -f pyproject.toml ] || _die "run from the repository root (no pyproject.toml in $PWD)"

    _venv_ok || _make_venv

    local stamp=.venv/.managerctl-setup-stamp want have=""
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$want" != "$have" ] || [ ! -x .venv/bin/pytest ] || [ ! -x .venv/bin/ruff ] ||
        [ ! -x .venv/bin/managerctl ]; then
        _say "installing managerctl and its test dependencies into .venv (pip)"
        .venv/bin/python -m pip install -q -e '.[test]' >&2
        printf '%s\n' "$want" >"$stamp"
    fi

    # Debian packages, installed in one apt-get run: the broker always (the demo and the tests
    # start throwaway nodes); PostgreSQL and man-db only for the tests (shared-store tests, man
    # page rendering checks).
    local missing=()
    _have_rabbitmq || missing+=(rabbitmq-server)
    if [ "${1:-}" = "--for-tests" ]; then
        _have_postgres || missing+=(postgresql)
        command -v man >/dev/null 2>&1 || missing+=(man-db groff-base)
        # Real shells for the completion tests, a real terminal for the --watch / card tests.
        command -v zsh >/dev/null 2>&1 || missing+=(zsh)
        command -v fish >/dev/null 2>&1 || missing+=(fish)
        command -v tmux >/dev/null 2>&1 || missing+=(tmux)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        _apt_install "${missing[@]}"
    fi
    _have_rabbitmq || _die "rabbitmq-server still not found after apt-get install"
    if [ "${1:-}" = "--for-tests" ]; then
        _have_postgres || _die "PostgreSQL (initdb) still not found after apt-get install"
    fi
}
