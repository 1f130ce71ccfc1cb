# shellcheck shell=bash
# Shared set-up for scripts/test.sh and scripts/demo.sh. Source it from the repository
# root, then call `managerctl_setup`. On a fresh Debian machine with only Python 3 it:
#   - creates .venv (installing python3-venv with apt if `python3 -m venv` cannot),
#   - installs the package with its test extras (skipped while pyproject.toml is unchanged),
#   - installs rabbitmq-server with apt when it is not installed,
#   - installs postgresql with apt when it is not installed (the capabilities store tests),
#     and zsh, fish and tmux (completion tests in real shells, views in a real terminal),
#   - builds the cached venvs of real nova and cinder for tests/peers (see below),
#   - builds the cached Debian 13 chroot with RabbitMQ 4.0 for tests/rabbitmq4 (see below).
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
        # jq: the README's tap recipe pipes JSON through it, and the peers tier runs it.
        command -v jq >/dev/null 2>&1 || missing+=(jq)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        _apt_install "${missing[@]}"
    fi
    _have_rabbitmq || _die "rabbitmq-server still not found after apt-get install"
    if [ "${1:-}" = "--for-tests" ]; then
        _have_postgres || _die "PostgreSQL (initdb) still not found after apt-get install"
        # Real nova and cinder for tests/peers, built while the RabbitMQ 4.0 chroot is (both
        # take minutes cold); a failed venv build only makes that tier skip.
        managerctl_peer_venvs &
        local peers_pid=$!
        managerctl_setup_rabbitmq4
        wait "$peers_pid" || true
    fi
}

# RabbitMQ 4.0 for the tests/rabbitmq4 rigs (design/RABBITMQ.md): Debian 13's packages in a
# chroot kept between runs, outside the repository. MANAGERCTL_RABBITMQ4_ROOT moves it. The
# marker is written last, so a root without it (an interrupted build) is built again.
MANAGERCTL_RABBITMQ4_ROOT="${MANAGERCTL_RABBITMQ4_ROOT:-/var/cache/managerctl-rabbitmq4/trixie}"
_RABBITMQ4_MARKER=.managerctl-rabbitmq4-ready
# The package's `adduser --system` would take uid 101, postgres on these hosts.
_RABBITMQ4_UID=64760

_debian_mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    elif [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

_build_rabbitmq4_root() {
    local root="$1" mirror log="$1.build.log"
    mirror="$(_debian_mirror)"
    _say "building the RabbitMQ 4.0 chroot in $root (debootstrap trixie from $mirror; one to a few minutes, log: $log)"
    command -v debootstrap >/dev/null 2>&1 || _apt_install debootstrap
    # Nothing is mounted under a root outside a private mount namespace, so removing it is
    # safe; refuse if something is (another tool's mount), rather than delete through it.
    if [ -d "$root" ]; then
        if findmnt -rn -o TARGET | grep -q "^$root/"; then
            _die "$root has mounts under it; unmount them first"
        fi
        _as_root rm -rf "$root"
    fi
    _as_root mkdir -p "$root"
    _as_root unshare --mount --propagation private \
        debootstrap --variant=minbase trixie "$root" "$mirror" >"$log" 2>&1 ||
        _die "debootstrap trixie failed: $(tail -n 5 "$log")"
    # No broker may start at install time; and a rabbitmq user whose uid is free on the host.
    printf '#!/bin/sh\nexit 101\n' | _as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
    _as_root chmod 755 "$root/usr/sbin/policy-rc.d"
    local uid="$_RABBITMQ4_UID"
    while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do
        uid=$((uid + 1))
    done
    _as_root unshare --mount --propagation private sh -ec '
        root="$1"; uid="$2"
        mount -t proc proc "$root/proc"
        mount -t sysfs sys "$root/sys"
        mount --bind /dev/pts "$root/dev/pts"
        chroot "$root" /bin/sh -ec "
            groupadd --system --gid $uid rabbitmq
            useradd --system --uid $uid --gid $uid --home-dir /var/lib/rabbitmq \
                --shell /usr/sbin/nologin rabbitmq
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends rabbitmq-server
            apt-get clean
            mkdir -p /var/lib/rabbitmq
            # One cookie made now: rigs started at the same time cannot race to create it.
            head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \\n\" > /var/lib/rabbitmq/.erlang.cookie
            chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
            chmod 400 /var/lib/rabbitmq/.erlang.cookie
        "
    ' sh "$root" "$uid" >>"$log" 2>&1 ||
        _die "installing rabbitmq-server in the chroot $root failed: $(tail -n 5 "$log")"
    local version
    version="$(_as_root chroot "$root" dpkg-query -W -f '${Version}' rabbitmq-server)"
    printf 'rabbitmq-server %s uid %s\n' "$version" "$uid" | _as_root tee "$root/$_RABBITMQ4_MARKER" >/dev/null
    _say "RabbitMQ $version ready in $root"
}

managerctl_setup_rabbitmq4() {
    local root="$MANAGERCTL_RABBITMQ4_ROOT"
    [ -f "$root/$_RABBITMQ4_MARKER" ] && [ -x "$root/usr/lib/rabbitmq/bin/rabbitmq-server" ] &&
        return 0
    _build_rabbitmq4_root "$root"
}

# --------------------------------------------------------------------------------------
# Real nova and cinder for tests/peers (design/PEERS.md), each in a venv of its own, cached
# between runs under $MANAGERCTL_PEERS_CACHE (default /var/cache/managerctl-peers when writable,
# else ~/.cache/managerctl-peers) and keyed by version. A venv is built in <dir>.tmp and renamed
# once pip succeeded, with a marker file inside, so a half-made one is never used: it is rebuilt.
# MANAGERCTL_PEERS=0 skips this (the tier then skips, saying why).
MANAGERCTL_PEER_SPECS=("nova-34.0.0:nova==34.0.0" "cinder-29.0.0:cinder==29.0.0 fixtures")
_PEER_MARKER=.managerctl-peer-complete

managerctl_peers_cache() {
    if [ -n "${MANAGERCTL_PEERS_CACHE:-}" ]; then
        printf '%s\n' "$MANAGERCTL_PEERS_CACHE"
    elif mkdir -p /var/cache/managerctl-peers 2>/dev/null && [ -w /var/cache/managerctl-peers ]; then
        printf '%s\n' /var/cache/managerctl-peers
    else
        printf '%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/managerctl-peers"
    fi
}

# A venv's scripts name its interpreter by absolute path: after the rename, point them at it.
_peer_venv_finish() {
    local tmp=$1 dir=$2 spec=$3 f
    grep -lI -- "$tmp" "$tmp"/bin/* 2>/dev/null | while read -r f; do
        sed -i "s#$tmp#$dir#g" "$f"
    done || true
    printf '%s\n' "$spec" >"$tmp/$_PEER_MARKER"
    rm -rf "$dir"
    mv "$tmp" "$dir"
}

_peer_venv_build() {
    local dir=$1 spec=$2 tmp="$1.tmp" log="$1.log" python="${MANAGERCTL_PEERS_PYTHON:-${PYTHON:-python3}}"
    # One builder per venv, even with several test runs at once; the others wait for it.
    exec 9>"$dir.lock"
    command -v flock >/dev/null 2>&1 && flock 9
    if [ -f "$dir/$_PEER_MARKER" ] && [ "$(cat "$dir/$_PEER_MARKER")" = "$spec" ]; then
        return 0
    fi
    _say "building the peer venv $dir (pip install $spec; log $log)"
    rm -rf "$tmp"
    # shellcheck disable=SC2086  # the spec is a list of requirements
    if "$python" -m venv --prompt "${dir##*/}" "$tmp" >"$log" 2>&1 &&
        "$tmp/bin/python" -m pip install $spec >>"$log" 2>&1; then
        _peer_venv_finish "$tmp" "$dir" "$spec"
        _say "peer venv ready: $dir"
    else
        _say "could not build $dir (the peers tier will skip); last lines of $log:"
        tail -n 15 "$log" >&2
        rm -rf "$tmp"
        return 1
    fi
}

managerctl_peer_venvs() {
    [ "${MANAGERCTL_PEERS:-1}" = 0 ] && return 0
    local cache entry pids=() rc=0 pid
    cache=$(managerctl_peers_cache)
    export MANAGERCTL_PEERS_CACHE=$cache
    mkdir -p "$cache" || {
        _say "cannot create $cache (set MANAGERCTL_PEERS_CACHE); the peers tier will skip"
        return 0
    }
    # Debian ships venv/ensurepip apart from python3.
    "${MANAGERCTL_PEERS_PYTHON:-${PYTHON:-python3}}" -c 'import ensurepip' >/dev/null 2>&1 ||
        _apt_install python3-venv
    for entry in "${MANAGERCTL_PEER_SPECS[@]}"; do
        # Built in parallel: each is mostly waiting on downloads and unpacking.
        (_peer_venv_build "$cache/${entry%%:*}" "${entry#*:}") &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=1
    done
    return "$rc"
}
