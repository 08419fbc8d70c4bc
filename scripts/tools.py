"""The executables the project runs, where they come from, and how to find them on Linux and macOS.

One table (``TOOLS``): each executable with its Debian/Ubuntu package (apt) and its Homebrew formula.
``scripts/bootstrap.sh`` installs the same packages (tests/layout/test_platform.py compares the two), and
the code finds every executable through :func:`which` (PATH first, then the places apt and Homebrew put
things that are not on PATH: ``/usr/sbin``, ``/usr/lib/postgresql/<version>/bin``, Homebrew's keg-only
``opt/<formula>/bin``), never through a hard-coded path. Standard library only: the bootstrap and the
test servers use it before and outside the virtualenv's packages.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    names: tuple[str, ...]  # executable names, the first found wins (gtime before time on macOS)
    apt: str  # Debian/Ubuntu package
    brew: str  # Homebrew formula; "" when macOS gets it another way (see ``macos``)
    used_by: str
    bench: bool = False  # only `make bench` needs it (bootstrap --with-bench)
    macos: str = ""  # one line on what differs on macOS


TOOLS: dict[str, Tool] = {
    "gcc": Tool(("gcc", "cc"), "build-essential", "", "building mysqlclient (pip)",
                macos="the C compiler is Xcode's Command Line Tools (xcode-select --install)"),
    "pkg-config": Tool(("pkg-config",), "pkg-config", "pkg-config", "building mysqlclient (pip)"),
    "mariadbd": Tool(("mariadbd",), "mariadb-server", "mariadb", "scripts/stack.py: the local MariaDB server"),
    "mariadb-install-db": Tool(("mariadb-install-db",), "mariadb-server", "mariadb",
                               "scripts/stack.py: the MariaDB data directory"),
    "mariadb": Tool(("mariadb",), "mariadb-client", "mariadb", "bench/run.py: the MySQL client peer"),
    "redis-server": Tool(("redis-server",), "redis-server", "redis", "tests/integration/celery_topology.py: the broker"),
    "initdb": Tool(("initdb",), "postgresql", "postgresql@17",
                   "tests/postgres.py: the metadata database of the e2e standalone and the Celery topology"),
    "postgres": Tool(("postgres",), "postgresql", "postgresql@17", "tests/postgres.py"),
    "chromium": Tool(("chromium", "chromium-browser"), "chromium", "", "tests/e2e/test_ui_browser.py",
                     macos="Chromium is Playwright's own build (`playwright install chromium`), found by path"),
    "time": Tool(("gtime", "time"), "time", "gnu-time", "bench/run.py: user/sys time and peak RSS", bench=True,
                 macos="GNU time is `gtime` (macOS's /usr/bin/time is BSD's, without -f)"),
    "rclone": Tool(("rclone",), "rclone", "rclone", "bench/run.py: a peer tool", bench=True),
    "npm": Tool(("npm",), "npm", "node", "bench/s3rver.py: installs s3rver", bench=True),
    "node": Tool(("node",), "npm", "node", "bench/s3rver.py: runs s3rver", bench=True),
}

#: What cannot work on macOS, one line each (the bootstrap prints them, the README lists them).
MACOS_LIMITS: tuple[str, ...] = (
    "a test run killed with SIGKILL leaves its local servers running (no parent-death signal on macOS): "
    "stop the mariadbd/moto processes by hand",
    "the e2e check that `airflow standalone` left no process behind reads /proc (Linux); on macOS it checks "
    "the process group only",
)


def _search_path() -> str:
    """PATH, then where apt and Homebrew put executables that are not on a user's PATH."""
    extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"]
    # Debian/Ubuntu keep PostgreSQL's server binaries per version: the newest first.
    extra += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for prefix in ("/opt/homebrew", "/usr/local"):  # Apple silicon, Intel
        extra.append(f"{prefix}/bin")
        extra += sorted(glob.glob(f"{prefix}/opt/postgresql@*/bin"), reverse=True)  # keg-only formulae
        extra += [f"{prefix}/opt/mariadb/bin"]
    return os.pathsep.join([os.environ.get("PATH", ""), *extra])


def which(tool: str) -> str | None:
    """The full path of ``tool`` (a key of TOOLS), or None."""
    if tool == "chromium":
        return chromium()
    if tool == "time":
        return gnu_time()
    path = _search_path()
    for name in TOOLS[tool].names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def install_hint(tool: str) -> str:
    t = TOOLS[tool]
    if platform.system() == "Darwin":
        return f"brew install {t.brew}" if t.brew else t.macos
    return f"apt-get install {t.apt}"


def require(tool: str) -> str:
    """Like :func:`which`, but a missing tool is one clear error naming what to install."""
    found = which(tool)
    if found is None:
        raise FileNotFoundError(f"{tool} not found (needed by {TOOLS[tool].used_by}): run `make bootstrap` "
                                f"or {install_hint(tool)}")
    return found


def playwright_chromium() -> str | None:
    """The Chromium that ``playwright install chromium`` downloaded, if any (its cache folder per OS)."""
    cache = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(
        Path.home() / ("Library/Caches" if platform.system() == "Darwin" else ".cache") / "ms-playwright")
    patterns = ["chromium-*/chrome-linux/chrome", "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
                "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing"]
    found = sorted((p for pat in patterns for p in glob.glob(os.path.join(cache, pat))), reverse=True)
    return found[0] if found else None


def chromium() -> str | None:
    """A Chromium for the browser tests: ``S3OPS_CHROMIUM``, else one on PATH (apt's), else Playwright's."""
    if os.environ.get("S3OPS_CHROMIUM"):
        return os.environ["S3OPS_CHROMIUM"]
    path = _search_path()
    for name in TOOLS["chromium"].names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return playwright_chromium()


def gnu_time() -> str | None:
    """GNU time (``-f "%U %S %M"``): ``gtime`` on macOS, ``time`` on Linux; BSD's time does not count."""
    path = _search_path()
    for name in TOOLS["time"].names:
        found = shutil.which(name, path=path)
        if not found:
            continue
        probe = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
        if "GNU" in probe.stdout + probe.stderr:
            return found
    return None


if __name__ == "__main__":  # `python3 -m scripts.tools`: what this machine has
    for key in TOOLS:
        print(f"{key:<20} {which(key) or '-- missing: ' + install_hint(key)}")
