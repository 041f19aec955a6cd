"""The ``fraudops`` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from fraudops import __version__, paths


def _refresh_notebooks(arguments: argparse.Namespace) -> int:
    from fraudops.notebooks import refresh_all

    counts = refresh_all(paths.project_root())
    for name, count in counts.items():
        print(f"{name}: {count} checked cells refreshed")
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
    refresh.set_defaults(run=_refresh_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.run(arguments)
    except (FileNotFoundError, ValueError) as error:
        print(f"fraudops: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
