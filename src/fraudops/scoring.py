"""Scoring: the production model and the compliance rules over a batch, in chunks.

The batch is read a chunk at a time, so a file larger than memory can be scored. Each chunk's
features use the transactions before it (the labelled data, then earlier chunks) as context,
exactly as in training; each chunk is scored by the production model at its threshold, checked
against the compliance rules, and appended to the output Parquet file, which is renamed into
place only when the whole batch has been scored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from fraudops import paths
from fraudops.alerts import Alert
from fraudops.data import (
    AMOUNT,
    CUSTOMER_ID,
    LABEL,
    TERMINAL_ID,
    TIMESTAMP,
    TRANSACTION_ID,
    DataValidationError,
    SourceSpec,
    extra_columns,
    parse_column_mapping,
    read_canonical,
    to_canonical,
    validate_transactions,
)
from fraudops.features import (
    FeatureSet,
    add_features,
    parse_windows,
    reach_days,
    terminal_settings,
)
from fraudops.io import atomic_path
from fraudops.model import fraud_scores, load_model
from fraudops.registry import PRODUCTION_CARD, PRODUCTION_MODEL, file_md5
from fraudops.rules import Rule, evaluate_rules, reasons_by_transaction

logger = logging.getLogger(__name__)

SCORES = Path("data/scored/scores.parquet")
SCORED_COLUMNS = (TRANSACTION_ID, TIMESTAMP, CUSTOMER_ID, TERMINAL_ID, AMOUNT)
# Compliance rules whose alerts need a person at once, whatever the model says.
URGENT_RULES = ("large_transaction", "watchlist")


@dataclass
class ScoreResult:
    """What a scoring run did.

    Only the flagged rows are kept (the transactions at or above the threshold and the rules
    that fired), not every scored row, so memory grows with the alerts and not with the batch.
    """

    run_id: str
    input_path: str
    output_path: str
    input_md5: str
    model_version: str
    threshold: float
    model_sha256: str = ""
    high_score: float = 0.95
    rows: int = 0
    fraud_alerts: int = 0
    rules_fired: dict = field(default_factory=dict)
    flagged: list = field(default_factory=list, repr=False)
    fired: list = field(default_factory=list, repr=False)

    def keep(self, scored: pd.DataFrame, fired: pd.DataFrame) -> None:
        """Count one scored chunk and keep the rows that make alerts."""
        flagged = scored["score"] >= self.threshold
        self.rows += len(scored)
        self.fraud_alerts += int(flagged.sum())
        for rule_id, count in fired["rule_id"].value_counts().items():
            self.rules_fired[rule_id] = self.rules_fired.get(rule_id, 0) + int(count)
        self.flagged.append(scored[flagged])
        scores = scored.set_index(TRANSACTION_ID)["score"]
        self.fired.append(fired.assign(score=fired[TRANSACTION_ID].map(scores).to_numpy()))

    @cached_property
    def alerts(self) -> list[Alert]:
        """The run's fraud alerts, then its compliance alerts, in the batch's order."""
        if not self.flagged:
            return []
        flagged = pd.concat(self.flagged, ignore_index=True)
        fired = pd.concat(self.fired, ignore_index=True)
        scores = fired.drop_duplicates(TRANSACTION_ID).set_index(TRANSACTION_ID)["score"]
        return fraud_alerts(
            flagged, self.threshold, self.high_score, self.model_version
        ) + compliance_alerts(fired.drop(columns="score"), scores)


def new_run_id() -> str:
    """A run id: UTC time and a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def read_chunks(path: Path, chunk_rows: int, columns: str = "") -> Iterator[pd.DataFrame]:
    """Yield canonical, validated chunks of a CSV or Parquet batch, in file order."""
    if path.suffix.lower() in (".parquet", ".pq"):
        source = pq.ParquetFile(path)
        batches = (batch.to_pandas() for batch in source.iter_batches(batch_size=chunk_rows))
    else:
        batches = pd.read_csv(path, chunksize=chunk_rows)
    first = True
    for raw in batches:
        if first:
            # Columns beyond the canonical ones are the features the file brings.
            renamed = raw.rename(columns={v: k for k, v in parse_column_mapping(columns).items()})
            categoricals, numeric = extra_columns(renamed)
            first = False
        spec = SourceSpec(path, columns, categoricals, numeric, labelled=False)
        frame = to_canonical(raw, spec)
        validate_transactions(frame, spec)
        yield frame.drop(columns=[LABEL], errors="ignore")
    if first:
        raise DataValidationError(path, ["the file has no rows"])


class SeenIds:
    """The transaction ids of the chunks scored so far, kept compact.

    Ids are held as NumPy integers (integers as they are, other ids by their 64-bit hash),
    eight bytes per transaction instead of a Python object each, spread over buckets by their
    low bits. Each bucket is one sorted array, so a new chunk is merged in bucket by bucket and
    the copy a merge makes is a small fraction of the whole.
    """

    BUCKETS = 256

    def __init__(self) -> None:
        self._buckets = [np.empty(0, dtype=np.uint64) for _ in range(self.BUCKETS)]

    def _by_bucket(self, ids: pd.Series) -> list[np.ndarray]:
        if pd.api.types.is_integer_dtype(ids):
            keys = ids.to_numpy().astype(np.uint64)
        else:
            keys = pd.util.hash_array(ids.astype(str).to_numpy())
        keys = np.sort(keys)
        bucket = keys % np.uint64(self.BUCKETS)
        order = np.argsort(bucket, kind="stable")  # keeps each bucket's keys sorted
        counts = np.bincount(bucket.astype(np.int64), minlength=self.BUCKETS)
        return np.split(keys[order], np.cumsum(counts)[:-1])

    def count_repeated(self, ids: pd.Series) -> int:
        """How many of ``ids`` were seen in an earlier chunk."""
        repeated = 0
        for seen, keys in zip(self._buckets, self._by_bucket(ids), strict=True):
            if len(seen) and len(keys):
                position = np.minimum(np.searchsorted(seen, keys), len(seen) - 1)
                repeated += int((seen[position] == keys).sum())
        return repeated

    def add(self, ids: pd.Series) -> None:
        """Remember ``ids``."""
        for number, keys in enumerate(self._by_bucket(ids)):
            if len(keys):
                seen = self._buckets[number]
                self._buckets[number] = np.insert(seen, np.searchsorted(seen, keys), keys)


def _check_order(chunk: pd.DataFrame, last_time, seen: SeenIds, path: Path) -> None:
    problems = []
    if last_time is not None and chunk[TIMESTAMP].min() < last_time:
        problems.append(
            f"column '{TIMESTAMP}': rule 'rows in time order across chunks' broken: a chunk "
            f"starts at {chunk[TIMESTAMP].min()}, before the previous chunk's end {last_time}; "
            f"sort the file by time"
        )
    repeated = seen.count_repeated(chunk[TRANSACTION_ID])
    if repeated:
        problems.append(
            f"column '{TRANSACTION_ID}': rule 'transaction id is unique' broken by "
            f"{repeated:,} rows (ids seen in an earlier chunk)"
        )
    if problems:
        raise DataValidationError(path, problems)


def fraud_alerts(
    scored: pd.DataFrame, threshold: float, high_score: float, model_version: str
) -> list[Alert]:
    """One alert per transaction scored at or above the threshold."""
    flagged = scored[scored["score"] >= threshold]
    alerts = []
    for row in flagged.itertuples(index=False):
        alerts.append(
            Alert.new(
                "fraud",
                key=f"fraud:tx:{row.transaction_id}",
                title=f"Suspected fraud: transaction {row.transaction_id}, score {row.score:.3f}",
                severity="high" if row.score >= high_score else "medium",
                details={
                    "transaction_id": row.transaction_id,
                    "timestamp": str(row.timestamp),
                    "customer_id": getattr(row, CUSTOMER_ID, None),
                    "terminal_id": getattr(row, TERMINAL_ID, None),
                    "amount": float(row.amount),
                    "score": round(float(row.score), 4),
                    "threshold": round(threshold, 4),
                    "model_version": model_version,
                    "rules": row.rules or "",
                    "reasons": [
                        f"model score {row.score:.3f} at or above threshold {threshold:.3f}"
                    ]
                    + ([row.rule_reasons] if row.rule_reasons else []),
                },
            )
        )
    return alerts


def compliance_alerts(fired: pd.DataFrame, scores: pd.Series) -> list[Alert]:
    """One alert per transaction and compliance rule that fired, with the model's score."""
    alerts = []
    for row in fired.itertuples(index=False):
        score = float(scores.get(row.transaction_id, np.nan))
        alerts.append(
            Alert.new(
                "compliance",
                key=f"compliance:{row.rule_id}:tx:{row.transaction_id}",
                title=f"Compliance rule {row.rule_id} ({row.rule_kind}): "
                f"transaction {row.transaction_id}",
                severity="high" if row.rule_kind in URGENT_RULES else "medium",
                details={
                    "transaction_id": row.transaction_id,
                    "rule_id": row.rule_id,
                    "rule_kind": row.rule_kind,
                    "timestamp": str(row.timestamp),
                    "customer_id": getattr(row, CUSTOMER_ID, None),
                    "terminal_id": getattr(row, TERMINAL_ID, None),
                    "amount": float(row.amount),
                    "score": round(score, 4) if np.isfinite(score) else None,
                    "reasons": [row.reason],
                },
            )
        )
    return alerts


@dataclass
class ProductionModel:
    """The production model with what its features need: the windows and terminal settings."""

    pipeline: object
    card: dict
    features: FeatureSet
    card_windows: tuple[int, ...]
    terminal: dict

    @classmethod
    def load(cls, root, card_windows: str = "1,7,30") -> ProductionModel:
        """Load the published production model of the project at ``root``.

        Raises:
            FileNotFoundError: No model has been published yet.
        """
        model_path, card_path = Path(root) / PRODUCTION_MODEL, Path(root) / PRODUCTION_CARD
        if not (model_path.is_file() and card_path.is_file()):
            raise FileNotFoundError(
                f"no production model at {model_path}: run `dvc repro retrain` first"
            )
        # The published copy is the DVC output the score stage depends on: it is the one used.
        pipeline, card = load_model(model_path, card_path)
        features = FeatureSet(
            tuple(card["features"]["numeric"]), tuple(card["features"]["categorical"])
        )
        # The terminal features are those the model was trained with, as its card records.
        terminal = terminal_settings(card.get("feature_settings"))
        return cls(pipeline, card, features, parse_windows(card_windows), terminal)

    @property
    def version(self) -> str:
        return self.card["version"]

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"]["threshold"])

    @property
    def reach_days(self) -> float:
        """How many days of earlier transactions the features look back."""
        return reach_days(self.card_windows, self.card.get("feature_settings"))

    def scores(self, transactions: pd.DataFrame, context: pd.DataFrame) -> pd.Series:
        """Fraud scores of ``transactions``, their features computed with ``context`` as past."""
        featured, _ = add_features(
            transactions, self.card_windows, context=context, **self.terminal
        )
        return fraud_scores(self.pipeline, featured, self.features)


def related_context(transactions: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``known`` that share a card or a terminal with ``transactions``.

    They are all the features of ``transactions`` depend on, so scoring a single transaction
    with them gives the same score as with all of ``known``, and takes far less time.
    """
    related = known[CUSTOMER_ID].isin(transactions[CUSTOMER_ID])
    if TERMINAL_ID in known and TERMINAL_ID in transactions:
        related |= known[TERMINAL_ID].isin(transactions[TERMINAL_ID])
    return known[related]


def score_batch(
    root,
    *,
    input_path: Path | None = None,
    output_path: Path | None = None,
    columns: str = "",
    rules: list[Rule],
    watchlist: pd.DataFrame | None = None,
    card_windows: str = "1,7,30",
    chunk_rows: int = 100_000,
    high_score: float = 0.95,
    run_id: str | None = None,
    progress: bool = True,
) -> ScoreResult:
    """Score a batch with the production model and the compliance rules, chunk by chunk.

    Args:
        root: The project root (for the production model and the labelled history).
        input_path: The batch; by default the data stage's ``score_batch.parquet``.
        output_path: Where the scored rows go (Parquet); by default ``data/scored/scores.parquet``.
        columns: Column mapping of the input, as for any input file.
        rules: The compliance rules to apply.
        watchlist: The screening list, for a watchlist rule.
        card_windows: The feature windows (must match the model's training).
        chunk_rows: Rows read and scored at a time.
        high_score: Scores from here on make high-severity fraud alerts.

    Returns:
        A :class:`ScoreResult` with counts and the alerts, ready for the alert helper.
    """
    root = Path(root)
    input_path = Path(input_path or root / paths.SCORE_BATCH)
    output_path = Path(output_path or root / SCORES)
    model = ProductionModel.load(root, card_windows)
    result = ScoreResult(
        run_id or new_run_id(),
        str(input_path),
        str(output_path),
        file_md5(input_path),
        model.version,
        model.threshold,
        model.card["sha256"],
        high_score,
    )

    context = known_transactions(root, model.reach_days, rules)
    last_time, seen = None, SeenIds()
    total = _row_count(input_path)
    with (
        atomic_path(output_path) as tmp,
        tqdm(total=total, unit="tx", disable=not progress, desc="scoring") as bar,
    ):
        writer = None
        for chunk in read_chunks(input_path, chunk_rows, columns):
            _check_order(chunk, last_time, seen, input_path)
            scored, fired = _score_chunk(chunk, context, model, rules, watchlist)
            result.keep(scored, fired)
            table = pa.Table.from_pandas(scored, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            context = _trim(
                pd.concat([context, chunk], ignore_index=True), model.reach_days, rules
            )
            last_time = chunk[TIMESTAMP].max()
            seen.add(chunk[TRANSACTION_ID])
            bar.update(len(chunk))
        writer.close()
    logger.info(
        "scored %s transactions from %s with %s: %s fraud alerts, compliance rules fired %s",
        f"{result.rows:,}",
        input_path,
        result.model_version,
        f"{result.fraud_alerts:,}",
        result.rules_fired or "none",
    )
    return result


def _score_chunk(chunk, context, model, rules, watchlist):
    scores = model.scores(chunk, context)
    fired = evaluate_rules(chunk, rules, history=context, watchlist=watchlist) if rules else None
    if fired is None:
        fired = pd.DataFrame(
            columns=[TRANSACTION_ID, "rule_id", "rule_kind", "reason", TIMESTAMP, AMOUNT]
        )
    by_transaction = reasons_by_transaction(fired) if len(fired) else None
    scored = chunk[[c for c in SCORED_COLUMNS if c in chunk]].copy()
    scored["score"] = scores.to_numpy()
    if by_transaction is not None:
        reasons = by_transaction.set_index(TRANSACTION_ID)
        scored["rules"] = scored[TRANSACTION_ID].map(reasons["rules"].map(", ".join)).fillna("")
        scored["rule_reasons"] = scored[TRANSACTION_ID].map(reasons["reasons"]).fillna("")
    else:
        scored["rules"] = ""
        scored["rule_reasons"] = ""
    return scored, fired


def known_transactions(root: Path, window_days: float, rules: list[Rule] = ()) -> pd.DataFrame:
    """The labelled transactions the batch follows, trimmed to what the windows can reach."""
    history = read_canonical(root, paths.HISTORY)
    new_batch = read_canonical(root, paths.NEW_BATCH)
    known = pd.concat([history, new_batch], ignore_index=True)
    return _trim(known, window_days, rules)


def _trim(known: pd.DataFrame, window_days: float, rules: list[Rule]) -> pd.DataFrame:
    """Keep only the rows a later transaction's windows can still reach."""
    rule_days = max((_rule_window_days(rule) for rule in rules), default=0)
    reach = pd.Timedelta(days=max(window_days, rule_days) + 1)
    return known[known[TIMESTAMP] >= known[TIMESTAMP].max() - reach].reset_index(drop=True)


def _rule_window_days(rule: Rule) -> float:
    settings = rule.settings
    if "window_hours" in settings:
        return settings["window_hours"] / 24
    if "window_minutes" in settings:
        return settings["window_minutes"] / 1440
    return 0.0


def _row_count(path: Path) -> int | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.ParquetFile(path).metadata.num_rows
    return None


def alert_precision_recall(scores: pd.DataFrame, labels: pd.DataFrame, threshold: float) -> dict:
    """Precision and recall the fraud alerts achieved against labels known afterwards."""
    joined = scores[[TRANSACTION_ID, "score"]].merge(labels, on=TRANSACTION_ID, how="inner")
    if joined.empty or joined[LABEL].sum() == 0:
        return {}
    alerted = joined["score"] >= threshold
    caught = int((alerted & (joined[LABEL] == 1)).sum())
    return {
        "labelled_rows": len(joined),
        "frauds": int(joined[LABEL].sum()),
        "fraud_alerts": int(alerted.sum()),
        "precision": round(caught / max(int(alerted.sum()), 1), 4),
        "recall": round(caught / int(joined[LABEL].sum()), 4),
    }


def score_and_alert(
    root,
    *,
    rules_params: dict,
    watchlist_path: str = "",
    outbox: str,
    digest_cap: int = 50,
    immediate_severity: str = "high",
    audit_path: str | Path = paths.AUDIT_LOG,
    input_path: Path | None = None,
    output_path: Path | None = None,
    columns: str = "",
    card_windows: str = "1,7,30",
    chunk_rows: int = 100_000,
    high_score: float = 0.95,
    progress: bool = True,
) -> dict:
    """Score a batch, raise its alerts, record every decision, and write the compliance report.

    The alerts go to the outbox before any delivery, and every step (transactions scored, rule
    fired, alert created, sent or failed) is appended to the hash-chained audit log.

    Returns:
        The run summary the report is made of, with the scoring result and delivery report.
    """
    from fraudops.alerts import AlertSettings, Outbox, raise_alerts
    from fraudops.audit import AuditLog, verify
    from fraudops.report import write_report
    from fraudops.rules import read_watchlist, rules_from_params

    root = Path(root)
    rules = rules_from_params(rules_params)
    needs_watchlist = any(rule.kind == "watchlist" for rule in rules)
    watchlist = read_watchlist(root / watchlist_path) if needs_watchlist else None
    result = score_batch(
        root,
        input_path=input_path,
        output_path=output_path,
        columns=columns,
        rules=rules,
        watchlist=watchlist,
        card_windows=card_windows,
        chunk_rows=chunk_rows,
        high_score=high_score,
        progress=progress,
    )
    # A rerun over the same batch finds its alerts already in the outbox: record only new ones.
    known = {alert.key for alert in Outbox(root / outbox).alerts()}
    audit = AuditLog(root / audit_path)
    audit.append_many(_scoring_events(result, [a for a in result.alerts if a.key not in known]))

    settings = AlertSettings.from_env(dotenv_path=root / ".env")
    channels = [
        name
        for name, on in (("email", settings.email_enabled), ("webhook", settings.webhook_enabled))
        if on
    ]
    # Outbox times have whole seconds only: this run's attempts are told apart by their count.
    tried = {
        (r["key"], r["channel"]): r["attempts"] for r in Outbox(root / outbox).status(channels)
    }
    delivery = raise_alerts(
        result.alerts, root / outbox, settings, digest_cap, immediate_severity, result.run_id
    )
    status = Outbox(root / outbox).status(channels)
    delivered_now = [
        row for row in status if row["attempts"] > tried.get((row["key"], row["channel"]), 0)
    ]
    audit.append_many(_delivery_events(delivered_now, settings, result.run_id))
    # A channel that still fails after its retries leaves alerts pending: the run must say so.
    gave_up = sorted({row["channel"] for row in delivered_now if row["state"] == "pending"})
    verdict = verify(root / audit_path)

    labels_path = root / paths.SCORE_LABELS
    quality = {}
    if input_path is None and labels_path.exists():
        scores = pd.read_parquet(result.output_path, columns=[TRANSACTION_ID, "score"])
        quality = alert_precision_recall(scores, pd.read_parquet(labels_path), result.threshold)
    run = {
        "run_id": result.run_id,
        "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_path": str(Path(result.input_path).relative_to(root))
        if Path(result.input_path).is_relative_to(root)
        else result.input_path,
        "input_md5": result.input_md5,
        "model_version": result.model_version,
        "model_sha256": result.model_sha256,
        "threshold": result.threshold,
        "rows": result.rows,
        "fraud_alerts": result.fraud_alerts,
        "rules_fired": result.rules_fired,
        "alerts_by_kind": pd.Series([a.kind for a in result.alerts]).value_counts().to_dict(),
        "delivery": {
            "sent": delivery.sent,
            "failed": delivery.failed,
            "pending": delivery.pending,
        }
        if (settings.email_enabled or settings.webhook_enabled)
        else {},
        "failures": pd.DataFrame([row for row in status if row["state"] == "failed"]),
        "pending": sum(1 for row in status if row["state"] == "pending"),
        "undelivered": {channel: delivery.pending[channel] for channel in gave_up},
        "audit_head": audit.head(),
        "audit_verdict": verdict.reason,
        "audit_ok": verdict.ok,
        "quality": quality,
    }
    write_report(root, run)
    return {**run, "result": result, "delivery_report": delivery}


def _scoring_events(result: ScoreResult, new_alerts: list) -> list[tuple[str, dict]]:
    events = [
        (
            "transactions_scored",
            {
                "run_id": result.run_id,
                "input": result.input_path,
                "input_md5": result.input_md5,
                "rows": result.rows,
                "model_version": result.model_version,
                "threshold": result.threshold,
            },
        )
    ]
    for rule_id, count in result.rules_fired.items():
        events.append(
            ("rule_fired", {"run_id": result.run_id, "rule_id": rule_id, "transactions": count})
        )
    for alert in new_alerts:
        events.append(
            (
                "alert_created",
                {
                    "run_id": result.run_id,
                    "key": alert.key,
                    "kind": alert.kind,
                    "severity": alert.severity,
                },
            )
        )
    return events


def _delivery_events(status: list[dict], settings, run_id: str) -> list[tuple[str, dict]]:
    enabled = {"email": settings.email_enabled, "webhook": settings.webhook_enabled}
    events = []
    for row in status:
        if not enabled.get(row["channel"]) or row["state"] == "pending":
            continue
        event = "alert_sent" if row["state"] == "sent" else "alert_failed"
        events.append(
            (
                event,
                {
                    "run_id": run_id,
                    "key": row["key"],
                    "channel": row["channel"],
                    "error": row["last_error"],
                    "message_id": row["message_id"],
                },
            )
        )
    return events


def top_alerts(result: ScoreResult, count: int = 15) -> pd.DataFrame:
    """The most severe alerts of a run, with masked identifiers and their reasons."""
    from fraudops.alerts import SEVERITIES, mask_identifier

    rows = []
    for alert in result.alerts:
        details = alert.details
        rows.append(
            {
                "kind": alert.kind,
                "severity": alert.severity,
                "transaction": details.get("transaction_id"),
                "customer": mask_identifier(details.get("customer_id")),
                "amount": details.get("amount"),
                "score": details.get("score"),
                "reasons": "; ".join(details.get("reasons", [])),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["rank"] = table["severity"].map({name: -i for i, name in enumerate(SEVERITIES)})
    table = table.sort_values(["rank", "score"], ascending=[True, False], na_position="last")
    return table.drop(columns="rank").head(count).reset_index(drop=True)
