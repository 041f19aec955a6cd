"""The ``fraudops`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fraudops import __version__, paths


def _refresh_notebooks(arguments: argparse.Namespace) -> int:
    from fraudops.notebooks import refresh_all

    counts = refresh_all(paths.project_root(), arguments.executed)
    for name, count in counts.items():
        print(f"{name}: {count} checked cells refreshed")
    return 0


def _registry_list(arguments: argparse.Namespace) -> int:
    from fraudops.registry import Registry

    registry = Registry(paths.project_root())
    state = registry.state()
    for version in state["versions"]:
        marker = "*" if version["version"] == state["production"] else " "
        metrics = version.get("metrics") or {}
        decision = (version.get("decision") or {}).get("outcome", "")
        print(
            f"{marker} {version['version']}  {version['model_type']:<24} "
            f"AP {metrics.get('average_precision', float('nan')):.4f}  {decision}"
        )
    pinned = " (pinned)" if state.get("pinned") else ""
    print(f"production: {state['production']}{pinned}")
    return 0


def _registry_rollback(arguments: argparse.Namespace) -> int:
    from fraudops.registry import Registry

    registry = Registry(paths.project_root())
    registry.rollback(arguments.version)
    print(f"production is now {arguments.version}, pinned; `fraudops registry unpin` to undo")
    return 0


def _registry_unpin(arguments: argparse.Namespace) -> int:
    from fraudops.registry import Registry

    Registry(paths.project_root()).unpin()
    print("production unpinned: the next retrain may promote a better challenger")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per task."""
    parser = argparse.ArgumentParser(prog="fraudops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fraudops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    refresh = commands.add_parser(
        "refresh-notebooks",
        help="copy the checked outputs of reports/*.ipynb (after dvc repro) into notebooks/",
    )
    refresh.add_argument(
        "--from",
        dest="executed",
        type=Path,
        default=None,
        help="folder of executed notebooks (default: reports/)",
    )
    refresh.set_defaults(run=_refresh_notebooks)

    registry = commands.add_parser("registry", help="list model versions, roll back, unpin")
    actions = registry.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every version; * marks production").set_defaults(
        run=_registry_list
    )
    rollback = actions.add_parser(
        "rollback", help="make an earlier version production again and pin it"
    )
    rollback.add_argument("version", help="a version from `fraudops registry list`, e.g. v0001")
    rollback.set_defaults(run=_registry_rollback)
    actions.add_parser("unpin", help="let the next retrain promote again").set_defaults(
        run=_registry_unpin
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.run(arguments)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"fraudops: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
