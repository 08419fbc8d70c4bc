"""``s3ops``: the four jobs from the command line, without Airflow.

Each subcommand is the feature's own command line (its ``main``), reached through one entry point that
``pip install -e .`` installs (pyproject.toml ``[project.scripts]``). Nothing here imports Airflow: the
layering contract and tests/layout/test_cli.py check that.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

Main = Callable[[Sequence[str]], int]


# Each command imports its feature only when it runs (``s3ops --help`` stays instant); the imports are
# plain statements so the layering contract sees them.
def _report(argv: Sequence[str]) -> int:
    from include.storage_report.cli import main as report

    return report(argv)


def _upload(argv: Sequence[str]) -> int:
    from include.upload.uploader import main as upload

    return upload(list(argv))


def _retention_plan(argv: Sequence[str]) -> int:
    from include.retention.cli import main as retention_plan

    return retention_plan(argv)


def _deploy_cleanup(argv: Sequence[str]) -> int:
    from include.deploy_cleanup.cli import main as deploy_cleanup

    return deploy_cleanup(argv)


#: subcommand → (its main, one line for the overview)
COMMANDS: dict[str, tuple[Main, str]] = {
    "report": (_report, "storage report of every bucket the credentials can see"),
    "upload": (_upload, "upload finished files from a local folder, deleting each once verified"),
    "retention plan": (_retention_plan, "dry run of the retention policy: the plan and every file's reason"),
    "deploy-cleanup": (_deploy_cleanup, "keep the newest N deployment folders (plan, or --delete)"),
}


def usage() -> str:
    lines = ["usage: s3ops COMMAND [--help] [ARGS…]", "", "commands:"]
    lines += [f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Each command's --help lists its options. The DAGs do the same work under Airflow."]
    return "\n".join(lines)


def resolve(argv: Sequence[str]) -> tuple[Main, list[str]] | None:
    """The command's ``main`` and its own arguments, or None for an unknown command."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return COMMANDS[name][0], list(argv[words:])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    found = resolve(args)
    if found is None:
        hint = " (did you mean 'retention plan'?)" if args[0] == "retention" else ""
        print(f"s3ops: unknown command {' '.join(args[:2])!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    command, rest = found
    return command(rest)


if __name__ == "__main__":
    sys.exit(main())
