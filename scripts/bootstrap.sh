#!/usr/bin/env bash
# Bootstrap everything the project needs, idempotently and quickly when already done:
#   1. system packages that pip and the local servers need (apt on Debian/Ubuntu, Homebrew on macOS);
#   2. a project-local virtualenv (.venv) with the pinned requirements.txt (runtime) and
#      requirements-dev.txt (tests and tools), and this project installed editable (the `s3ops` command).
# Usage: scripts/bootstrap.sh [--with-bench]   (bench adds the peer tools: rclone; npm for s3rver)
set -euo pipefail
cd "$(dirname "$0")/.."

with_bench=0
[[ "${1:-}" == "--with-bench" ]] && with_bench=1

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[bootstrap] %s\033[0m\n' "$*" >&2; exit 1; }

os="$(uname -s)"
[[ "$os" == "Linux" || "$os" == "Darwin" ]] \
  || die "unsupported OS $os: use Linux (Debian/Ubuntu) or macOS, or docker compose (see README)"
brew_prefix=""
[[ "$os" == "Darwin" ]] && brew_prefix="$(brew --prefix 2>/dev/null || echo /opt/homebrew)"

# have <executable>: on PATH, or where apt and Homebrew put what is not on PATH (as scripts/tools.py looks).
have() {
  type -P "$1" >/dev/null 2>&1 && return 0  # executables only: not bash's `time` keyword
  local d
  for d in /usr/sbin /sbin /usr/local/sbin /usr/lib/postgresql/*/bin ${brew_prefix:+$brew_prefix/opt/postgresql@*/bin $brew_prefix/opt/mariadb/bin}; do
    [[ -x "$d/$1" ]] && return 0
  done
  return 1
}

missing=()
# need <executable> <apt package> <brew formula or -> [bench]: the package lists, one line per executable.
# They must equal scripts/tools.py's TOOLS (tests/layout/test_platform.py compares them).
need() {
  [[ "${4:-}" == bench && $with_bench == 0 ]] && return 0
  local exe="$1" pkg="$2"
  [[ "$os" == "Darwin" ]] && pkg="$3"
  [[ "$os" == "Darwin" && "$exe" == time ]] && exe=gtime  # GNU time is gtime on macOS
  if ! have "$exe" && [[ "$pkg" != - ]]; then
    [[ " ${missing[*]:-} " == *" $pkg "* ]] || missing+=("$pkg")  # :- keeps bash 3.2 (macOS) happy under set -u
  fi
}
#    executable          apt               brew
need gcc                 build-essential   -
need pkg-config          pkg-config        pkg-config
need mariadbd            mariadb-server    mariadb
need mariadb-install-db  mariadb-server    mariadb
need mariadb             mariadb-client    mariadb
need redis-server        redis-server      redis
need initdb              postgresql        postgresql@17
need postgres            postgresql        postgresql@17
need chromium            chromium          -
need time                time              gnu-time       bench
need rclone              rclone            rclone         bench
need npm                 npm               node           bench
need node                npm               node           bench
# headers for mysqlclient: libmariadb (apt) / the mariadb formula's own (brew)
if ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists libmariadb 2>/dev/null; then
  [[ "$os" == "Linux" ]] && missing+=(libmariadb-dev)
fi

if [[ "$os" == "Linux" ]]; then
  export PATH="$PATH:/usr/sbin:/sbin"
  if ((${#missing[@]})); then
    say "installing system packages: ${missing[*]}"
    sudo=""
    if [[ $(id -u) != 0 ]]; then
      command -v sudo >/dev/null || die "run as root or install sudo; or install by hand: apt-get install ${missing[*]}"
      sudo="sudo"
    fi
    command -v apt-get >/dev/null || die "no apt-get here: install these packages by hand: ${missing[*]}"
    # policy-rc.d keeps apt from starting the system MariaDB/Redis/PostgreSQL services: the project runs its own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
      trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get update -qq || die "apt-get update failed: install by hand: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install failed: install by hand: apt-get install ${missing[*]}"
  fi
else
  have cc || die "install Xcode's Command Line Tools first: xcode-select --install"
  if ((${#missing[@]})); then
    command -v brew >/dev/null || die "install Homebrew, then: brew install ${missing[*]}"
    # MariaDB, not MySQL: both platforms test the same server (collations, authentication).
    brew list --formula mysql >/dev/null 2>&1 && say "Homebrew's mysql is installed; mariadb conflicts with it: brew unlink mysql"
    say "brew install ${missing[*]}"
    brew install "${missing[@]}" || die "brew install failed: brew install ${missing[*]}"
  fi
  [[ -d "$brew_prefix/opt/mariadb/lib/pkgconfig" ]] && export PKG_CONFIG_PATH="$brew_prefix/opt/mariadb/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
  python3 -c 'from scripts.tools import MACOS_LIMITS; print("\n".join("[bootstrap] on macOS: " + s for s in MACOS_LIMITS))' || true
fi

# The virtualenv: rebuilt only when the runtime or dev lock, or pyproject.toml, changes.
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || die "python3 (3.11.5-3.13) is required"
# The pinned set's floor (Airflow's providers need 3.11, soupsieve 3.11.5): tests/layout/test_requirements.py.
python_ok() { "$1" -c 'import sys; sys.exit(0 if (3, 11, 5) <= sys.version_info[:3] and sys.version_info[:2] <= (3, 13) else 1)'; }
python_ok "$py" || die "the pinned packages need Python 3.11.5-3.13; found $("$py" --version). Set PYTHON=/path/to/python3.12"
if [[ -d .venv ]] && ! python_ok .venv/bin/python 2>/dev/null; then
  say "recreating .venv: it was made with a Python the pinned packages do not support"
  rm -rf .venv
fi
want="$(cat requirements.txt requirements-dev.txt pyproject.toml | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-64)"
stamp=.venv/.requirements.sha256
if [[ -f $stamp && "$(cat $stamp)" == "$want" && -x .venv/bin/airflow && -x .venv/bin/s3ops ]]; then
  exit 0
fi
say "creating .venv with the pinned requirements (first run takes a few minutes)"
[[ -d .venv ]] || "$py" -m venv .venv
mkdir -p .s3ops
pip_log=.s3ops/bootstrap-pip.log
if ! { .venv/bin/python -m pip install -q --upgrade pip \
       && .venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt \
       && .venv/bin/python -m pip install -q --no-deps -e .; } >$pip_log 2>&1; then
  grep -v "^WARNING: Location" $pip_log | tail -n 40 >&2
  die "pip install failed (full log: $pip_log); mysqlclient needs pkg-config and libmariadb-dev (apt) or mariadb (brew)"
fi
# No Chromium from the system (macOS): the browser tests use Playwright's own build, found by path.
if ! .venv/bin/python -c 'import sys; from scripts.tools import chromium; sys.exit(0 if chromium() else 1)'; then
  say "no Chromium found: python -m playwright install chromium"
  .venv/bin/python -m playwright install chromium >>$pip_log 2>&1 \
    || say "playwright install chromium failed (see $pip_log): the browser tests will say so; set S3OPS_CHROMIUM"
fi
echo "$want" > $stamp
say "ready"
