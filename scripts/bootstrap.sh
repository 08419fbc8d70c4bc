#!/usr/bin/env bash
# Bootstrap everything the project needs, idempotently and quickly when already done:
#   1. system packages that pip and the local servers need (apt on Debian/Ubuntu, Homebrew on macOS);
#   2. a project-local virtualenv (.venv) with the pinned requirements.txt.
# Usage: scripts/bootstrap.sh [--with-bench]   (bench adds the peer tools: rclone; npm for s3rver)
set -euo pipefail
cd "$(dirname "$0")/.."

with_bench=0
[[ "${1:-}" == "--with-bench" ]] && with_bench=1

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[bootstrap] %s\033[0m\n' "$*" >&2; exit 1; }

missing_apt=()
missing_brew=()
# need <command that must exist> <apt package> <brew package>
need() {
  if ! command -v "$1" >/dev/null 2>&1; then missing_apt+=("$2"); missing_brew+=("$3"); fi
}
need_pkgconfig() {  # headers for mysqlclient
  if ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists libmariadb 2>/dev/null; then
    missing_apt+=(libmariadb-dev); missing_brew+=(mysql-client)
  fi
}

os="$(uname -s)"
if [[ "$os" == "Linux" ]]; then
  export PATH="$PATH:/usr/sbin:/sbin"
  need pkg-config pkg-config pkg-config
  need gcc build-essential ''
  need_pkgconfig
  need mariadbd mariadb-server mysql
  need mariadb mariadb-client mysql
  need chromium chromium ''
  need redis-server redis-server redis
  need pg_ctlcluster postgresql postgresql
  [[ $with_bench == 1 ]] && need rclone rclone rclone
  [[ $with_bench == 1 ]] && need npm npm ''  # s3rver (scenario 3), installed by bench.run into .s3ops/bench-node
  need /usr/bin/time time ''
  if ((${#missing_apt[@]})); then
    say "installing system packages: ${missing_apt[*]}"
    sudo=""
    if [[ $(id -u) != 0 ]]; then
      command -v sudo >/dev/null || die "run as root or install sudo; or install by hand: apt-get install ${missing_apt[*]}"
      sudo="sudo"
    fi
    command -v apt-get >/dev/null || die "no apt-get here: install these packages by hand: ${missing_apt[*]}"
    # policy-rc.d keeps apt from starting the system MariaDB/Redis/PostgreSQL services: the project runs its own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
      trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get update -qq || die "apt-get update failed: install by hand: ${missing_apt[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null \
      || die "apt-get install failed: install by hand: apt-get install ${missing_apt[*]}"
  fi
elif [[ "$os" == "Darwin" ]]; then
  need pkg-config pkg-config pkg-config
  need mysqld '' mysql
  need redis-server '' redis
  [[ $with_bench == 1 ]] && need rclone '' rclone
  [[ $with_bench == 1 ]] && need npm '' node
  if ((${#missing_brew[@]})); then
    command -v brew >/dev/null || die "install Homebrew, then: brew install ${missing_brew[*]}"
    say "brew install ${missing_brew[*]}"
    brew install "${missing_brew[@]}" || die "brew install failed: brew install ${missing_brew[*]}"
  fi
  [[ -d /opt/homebrew/opt/mysql-client/lib/pkgconfig ]] && export PKG_CONFIG_PATH="/opt/homebrew/opt/mysql-client/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
else
  die "unsupported OS $os: use Linux (Debian/Ubuntu) or macOS, or docker compose (see README)"
fi

# The virtualenv: rebuilt only when requirements.txt changes.
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || die "python3 (3.10-3.13) is required"
"$py" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' \
  || die "Airflow 3.3 needs Python 3.10-3.13; found $("$py" --version). Set PYTHON=/path/to/python3.12"
want="$(cat requirements.txt | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-64)"
stamp=.venv/.requirements.sha256
if [[ -f $stamp && "$(cat $stamp)" == "$want" && -x .venv/bin/airflow ]]; then
  exit 0
fi
say "creating .venv with the pinned requirements (first run takes a few minutes)"
[[ -d .venv ]] || "$py" -m venv .venv
mkdir -p .s3ops
pip_log=.s3ops/bootstrap-pip.log
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -r requirements.txt; } >$pip_log 2>&1; then
  grep -v "^WARNING: Location" $pip_log | tail -n 40 >&2
  die "pip install failed (full log: $pip_log); mysqlclient needs pkg-config and libmariadb-dev"
fi
echo "$want" > $stamp
say "ready"
