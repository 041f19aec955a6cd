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


EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_MODEL, EXIT_DELIVERY, EXIT_AUDIT = 0, 1, 2, 3, 4, 5


def _score(arguments: argparse.Namespace) -> int:
    root = paths.project_root()
    try:
        return _score_batch(arguments, root)
    except Exception as error:  # the nightly job's failure must reach people, then exit non-zero
        _alert_failure(root, "score", arguments.input, error)
        raise


def _alert_failure(root: Path, job: str, subject: Path, error: Exception) -> None:
    """Raise a pipeline-failure alert through the shared helper; never mask the original error."""
    import hashlib

    from fraudops.alerts import Alert, AlertSettings, raise_alerts

    message = f"{type(error).__name__}: {error}"
    digest = hashlib.sha256(f"{job}:{subject.name}:{message}".encode()).hexdigest()[:16]
    alert = Alert.new(
        "pipeline_failure",
        key=f"pipeline_failure:{job}:{digest}",
        title=f"fraudops {job} failed on {subject.name}",
        severity="high",
        details={"job": job, "input": str(subject), "error": message[:2000]},
    )
    try:
        outbox = root / paths.load_params(root)["alerts"]["outbox"]
        raise_alerts([alert], outbox, AlertSettings.from_env(dotenv_path=root / ".env"))
    except Exception as alert_error:  # pragma: no cover, reported but never hides the failure
        logging.getLogger(__name__).error("could not raise the failure alert: %s", alert_error)


def _score_batch(arguments: argparse.Namespace, root: Path) -> int:
    from fraudops.scoring import score_and_alert

    params = paths.load_params(root)
    run = score_and_alert(
        root,
        rules_params=params["rules"],
        watchlist_path=params["score"]["watchlist"],
        outbox=params["alerts"]["outbox"],
        digest_cap=params["alerts"]["digest_cap"],
        immediate_severity=params["alerts"]["immediate_severity"],
        audit_path=params["audit_log"],
        input_path=arguments.input.resolve(),
        output_path=arguments.out.resolve(),
        columns=arguments.columns,
        card_windows=params["features"]["card_windows"],
        chunk_rows=arguments.chunk_rows or params["score"]["chunk_rows"],
        high_score=params["score"]["high_score"],
        progress=not arguments.no_progress,
    )
    print(
        f"scored {run['rows']:,} transactions with model {run['model_version']}: "
        f"{run['fraud_alerts']:,} fraud alerts, rules fired {run['rules_fired'] or 'none'}; "
        f"scores in {arguments.out}, report in reports/compliance/"
    )
    if not run["audit_ok"]:
        print(f"fraudops: audit log broken: {run['audit_verdict']}", file=sys.stderr)
        return EXIT_AUDIT
    if len(run["failures"]):
        print(f"fraudops: {len(run['failures'])} alert deliveries failed", file=sys.stderr)
    for channel, pending in run["undelivered"].items():
        print(
            f"fraudops: {channel} delivery still failed after its retries; {pending} alerts "
            "stay pending for the next run",
            file=sys.stderr,
        )
    if len(run["failures"]) or run["undelivered"]:
        return EXIT_DELIVERY
    return EXIT_OK


def _audit_verify(arguments: argparse.Namespace) -> int:
    from fraudops.audit import verify

    root = paths.project_root()
    path = arguments.path or root / paths.load_params(root)["audit_log"]
    result = verify(path, expected_head=arguments.head)
    print(f"{path}: {result.reason}")
    return EXIT_OK if result.ok else EXIT_AUDIT


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

    score = commands.add_parser(
        "score",
        help="score a transaction file with the production model, apply the compliance rules, "
        "raise the alerts",
        description="Score INPUT (CSV or Parquet) in chunks with the production model and the "
        "compliance rules of params.yaml; write the scored rows to OUTPUT (Parquet), the alerts "
        "to the outbox (and e-mail/webhook when configured), every decision to the audit log, and "
        "the compliance report. Exit codes: 0 done, 1 bad input or settings, 2 usage, 3 model "
        "file refused, 4 some alert deliveries failed, 5 audit log broken.",
    )
    score.add_argument("input", type=Path, help="the transactions to score (CSV or Parquet)")
    score.add_argument("--out", type=Path, required=True, help="the scored rows (Parquet)")
    score.add_argument(
        "--columns", default="", help="column mapping, e.g. 'amount=tx_amount,timestamp=tx_time'"
    )
    score.add_argument("--chunk-rows", type=int, default=None, help="rows scored at a time")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(run=_score)

    audit = commands.add_parser("audit", help="check the hash-chained audit log")
    audit_actions = audit.add_subparsers(dest="action", required=True)
    verify = audit_actions.add_parser(
        "verify", help="say whether the chain is intact, or where it breaks"
    )
    verify.add_argument(
        "path", nargs="?", type=Path, help="the log (default: audit_log in params.yaml)"
    )
    verify.add_argument(
        "--head", default=None, help="a head hash kept elsewhere, to detect truncation"
    )
    verify.set_defaults(run=_audit_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments = build_parser().parse_args(argv)
    from fraudops.model import ModelIntegrityError

    try:
        return arguments.run(arguments)
    except ModelIntegrityError as error:
        print(f"fraudops: {error}", file=sys.stderr)
        return EXIT_MODEL
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"fraudops: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
