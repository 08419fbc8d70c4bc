"""Linux and macOS: the bootstrap installs what the code runs, and the code finds it without fixed paths.

scripts/tools.py holds the one table of executables (apt package, Homebrew formula); these tests keep
scripts/bootstrap.sh's package lines equal to it and every lookup in the code going through it.
"""

from __future__ import annotations

import ast
import os
import re
import stat
from pathlib import Path

import pytest

from scripts import tools

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("include", "dags", "plugins", "scripts", "tests", "bench")
#: Executables of the virtualenv itself (pip installs them next to python), not system packages.
VENV_EXECUTABLES = {"airflow"}
FIXED_PATH = re.compile(r"^/(usr/(local/)?(s?bin|lib)|sbin|opt/homebrew)/")


def bootstrap_table() -> dict[str, tuple[str, str, bool]]:
    """``need <executable> <apt> <brew|-> [bench]`` lines of scripts/bootstrap.sh."""
    rows = {}
    for line in (ROOT / "scripts/bootstrap.sh").read_text().splitlines():
        m = re.fullmatch(r"need\s+(\S+)\s+(\S+)\s+(\S+)(\s+bench)?\s*", line)
        if m:
            rows[m[1]] = (m[2], "" if m[3] == "-" else m[3], bool(m[4]))
    return rows


def python_files() -> list[Path]:
    return [p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py") if p != ROOT / "scripts/tools.py"]


def test_bootstrap_package_lines_equal_the_tools_table() -> None:
    table = {key: (t.apt, t.brew, t.bench) for key, t in tools.TOOLS.items()}
    assert bootstrap_table() == table


def test_every_executable_without_a_brew_formula_says_how_macos_gets_it() -> None:
    for key, tool in tools.TOOLS.items():
        assert tool.brew or tool.macos, f"{key}: no Homebrew formula and no macOS note"


def test_the_code_looks_up_executables_only_through_the_table() -> None:
    executables = {name for t in tools.TOOLS.values() for name in t.names}
    problems = []
    for path in python_files():
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
                name = node.args[0].value
                if owner in ("tools", "system_tools") and node.func.attr in ("which", "require") \
                        and name not in tools.TOOLS:
                    problems.append(f"{where}:{node.lineno}: {name!r} is not in scripts/tools.py TOOLS")
                if owner == "shutil" and node.func.attr == "which" and name not in VENV_EXECUTABLES:
                    problems.append(f"{where}:{node.lineno}: shutil.which({name!r}): use scripts.tools")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and FIXED_PATH.match(node.value):
                problems.append(f"{where}:{node.lineno}: fixed path {node.value!r}: use scripts.tools")
            elif isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) \
                    and node.elts[0].value in executables:
                problems.append(f"{where}:{node.lineno}: runs {node.elts[0].value!r} by name: use scripts.tools")
    assert problems == []


def test_this_machine_has_every_tool_the_suite_needs() -> None:
    """After the bootstrap (CI runs it first), every non-bench executable is found."""
    missing = {key: tools.install_hint(key) for key, t in tools.TOOLS.items() if not t.bench and not tools.which(key)}
    assert missing == {}


def _script(folder: Path, name: str, output: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_gnu_time_prefers_gtime_and_refuses_bsd_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "_search_path", lambda: str(tmp_path))
    _script(tmp_path, "time", "usage: time [-al] command")  # BSD's answer to --version
    assert tools.gnu_time() is None
    assert "gnu-time" in tools.TOOLS["time"].brew
    gtime = _script(tmp_path, "gtime", "GNU Time 1.9")
    assert tools.gnu_time() == str(gtime)


def test_chromium_found_by_env_then_path_then_playwright(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "_search_path", lambda: str(tmp_path / "bin"))
    monkeypatch.delenv("S3OPS_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "pw"))
    assert tools.chromium() is None
    managed = tmp_path / "pw/chromium-1200/chrome-mac-arm64/Chromium.app/Contents/MacOS/Chromium"
    managed.parent.mkdir(parents=True)
    managed.write_text("")
    assert tools.chromium() == str(managed)
    (tmp_path / "bin").mkdir()
    on_path = _script(tmp_path / "bin", "chromium", "Chromium 140")
    assert tools.chromium() == str(on_path)
    monkeypatch.setenv("S3OPS_CHROMIUM", "/somewhere/chrome")
    assert tools.chromium() == "/somewhere/chrome"


def test_a_missing_tool_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "_search_path", lambda: os.devnull)
    monkeypatch.setattr(tools.platform, "system", lambda: "Darwin")
    with pytest.raises(FileNotFoundError, match=r"^initdb not found .*brew install postgresql@17$"):
        tools.require("initdb")
    monkeypatch.setattr(tools.platform, "system", lambda: "Linux")
    with pytest.raises(FileNotFoundError, match=r"apt-get install mariadb-server$"):
        tools.require("mariadbd")
