#!/usr/bin/env bash
# Prepare this checkout for `make run` / `make test`:
#   1. install the Debian packages xgate and its tests need, when some are missing;
#   2. create the virtualenv .venv with Python >= 3.11;
#   3. pip-install the project (editable) when pyproject.toml changed since the last install.
# Idempotent: a second run with nothing to do takes well under a second.
#
# Usage: scripts/bootstrap.sh [--extras NAME[,NAME...]]
# Environment: PYTHON (interpreter for the venv; default python3.11, else python3),
#              VENV (default .venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=""
while [ $# -gt 0 ]; do
    case "$1" in
        --extras) extras="${2:?--extras needs a value}"; shift 2 ;;
        --extras=*) extras="${1#--extras=}"; shift ;;
        *) echo "bootstrap: unknown argument: $1" >&2; exit 2 ;;
    esac
done

venv="${VENV:-.venv}"
step() { printf '==> %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

# --- Python -----------------------------------------------------------------------------------
python="${PYTHON:-}"
if [ -z "$python" ]; then
    python="$(command -v python3.11 || command -v python3 || true)"
fi
[ -n "$python" ] || die "no python3 found; install Python 3.11 or set PYTHON"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is $("$python" -V 2>&1); xgate needs Python >= 3.11 (set PYTHON)"

# --- Debian packages --------------------------------------------------------------------------
# postgresql: the tests start their own server on loopback (tests/support/postgres.py).
# clamav-daemon: the virus scanner; clamav-testfiles: harmless test payloads it detects.
packages=(ca-certificates openssl gnupg postgresql clamav-daemon clamav-testfiles)
# qpdf: the tests make password-protected PDFs with it, as a citizen's tools would.
# chromium: the browser tests (tests/browser) drive Debian's build; Playwright's own browser
# download cannot work on these machines.
case ",$extras," in
    *,test,*) packages+=(qpdf chromium) ;;
esac
# Debian's own Python ships venv/ensurepip separately; pyenv's and python.org's include them.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing packages (${missing[*]}); run as root or install them"
        sudo=(sudo)
    fi

    # Without systemd (containers, CI) a package's attempt to start its service can fail the
    # whole install. A policy-rc.d that answers 101 tells invoke-rc.d and deb-systemd-invoke not
    # to start anything. Keep a policy the machine already has if it forbids starts; otherwise
    # put ours in place for this install only and restore the previous state afterwards.
    policy=/usr/sbin/policy-rc.d
    policy_backup=""
    policy_installed=0
    restore_policy() {
        if [ "$policy_installed" -eq 1 ]; then
            if [ -n "$policy_backup" ]; then
                "${sudo[@]}" mv -f "$policy_backup" "$policy"
            else
                "${sudo[@]}" rm -f "$policy"
            fi
        fi
    }
    trap restore_policy EXIT
    policy_rc=0
    if [ -x "$policy" ]; then
        "$policy" clamav-daemon start >/dev/null 2>&1 || policy_rc=$?
    fi
    if [ "$policy_rc" -ne 101 ]; then
        if [ -e "$policy" ]; then
            policy_backup="$("${sudo[@]}" mktemp "${policy}.xgate-backup.XXXXXX")"
            "${sudo[@]}" cp -p "$policy" "$policy_backup"
        fi
        printf '#!/bin/sh\n# Put here by xgate scripts/bootstrap.sh during apt-get install.\nexit 101\n' \
            | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 0755 "$policy"
        policy_installed=1
    fi

    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update (missing: ${missing[*]})"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    step "apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 \
        --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed (exit $?)"
    restore_policy
    policy_installed=0
    trap - EXIT

    still=()
    for pkg in "${missing[@]}"; do
        is_installed "$pkg" || still+=("$pkg")
    done
    [ ${#still[@]} -eq 0 ] || die "not fully installed after apt-get: ${still[*]}"
else
    step "Debian packages present: ${packages[*]}"
fi

# --- virtualenv -------------------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    if [ -e "$venv" ]; then
        step "recreating broken virtualenv $venv with $python"
        "$python" -m venv --clear "$venv"
    else
        step "creating virtualenv $venv with $python ($("$python" -V 2>&1))"
        "$python" -m venv "$venv"
    fi
fi

# --- the project ------------------------------------------------------------------------------
# One stamp per set of extras, holding the hash of the pyproject.toml it was installed from.
# The stamps live inside the venv, so a new venv starts without them.
stamp_name="base"
target="."
if [ -n "$extras" ]; then
    stamp_name="${extras//,/-}"
    target=".[$extras]"
fi
stamp="$venv/.stamp-$stamp_name"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"

if [ "$want" != "$have" ]; then
    step "pip install --upgrade pip"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    step "pip install -e '$target'"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$target"
    printf '%s\n' "$want" > "$stamp"
    # Installing with extras installs the base dependencies too.
    [ "$stamp_name" = "base" ] || printf '%s\n' "$want" > "$venv/.stamp-base"
else
    step "python packages up to date ($target, pyproject.toml unchanged)"
fi
