"""Reading transaction files into the project's canonical columns, and validating them.

Every file the pipeline reads goes through :func:`read_transactions`: it maps the file's own
column names to the canonical ones, parses types, and checks the rules below. A broken rule
raises :class:`DataValidationError`, naming the file, the column, the rule and the row count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq

from fraudops import paths
from fraudops.io import write_parquet_atomic
from fraudops.simulate import SimulationConfig, write_simulated_data

logger = logging.getLogger(__name__)

TRANSACTION_ID = "transaction_id"
TIMESTAMP = "timestamp"
CUSTOMER_ID = "customer_id"
TERMINAL_ID = "terminal_id"
AMOUNT = "amount"
LABEL = "label"
FRAUD_KIND = "fraud_kind"

ID_COLUMNS = (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID)
CANONICAL = (TRANSACTION_ID, TIMESTAMP, CUSTOMER_ID, TERMINAL_ID, AMOUNT, LABEL)
REQUIRED = (TIMESTAMP, AMOUNT)
SOURCES = ("synthetic", "csv", "parquet")

# The ULB credit-card file (Time, V1..V28, Amount, Class): no ids, Time in seconds since the
# first transaction, and 28 anonymised PCA components passed through as numeric features.
ULB_COLUMNS = "timestamp=Time,amount=Amount,label=Class"
ULB_FEATURES = tuple(f"V{i}" for i in range(1, 29))


class DataValidationError(ValueError):
    """A transaction file breaks one or more rules; the message lists each one."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{path} is not valid transaction data:\n{listing}")


@dataclass(frozen=True)
class SourceSpec:
    """How to read one transaction file.

    Attributes:
        path: The CSV or Parquet file.
        columns: Mapping from canonical names to the file's names, as
            ``"amount=transaction_amount,label=fraud_label"``; unnamed columns keep
            their canonical names.
        categoricals: Canonical names of the categorical columns to keep.
        numeric_features: Further numeric columns (file names) passed through as features.
        timestamp_origin: Start date for numeric timestamps given in seconds.
        labelled: Whether the file must carry a label column.
    """

    path: Path
    columns: str = ""
    categoricals: tuple[str, ...] = ()
    numeric_features: tuple[str, ...] = ()
    timestamp_origin: str = "2026-01-05"
    labelled: bool = True
    mapping: dict[str, str] = field(init=False)

    def __post_init__(self):
        known = (*CANONICAL, *self.categoricals)
        object.__setattr__(self, "mapping", parse_column_mapping(self.columns, known))


def parse_column_mapping(text: str, known: tuple[str, ...] = CANONICAL) -> dict[str, str]:
    """Parse ``"canonical=file_column,..."`` into a dict, rejecting unknown canonical names."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        canonical, sep, source = (piece.strip() for piece in item.partition("="))
        if not sep or not canonical or not source:
            raise ValueError(f"column mapping item {item!r} is not of the form canonical=column")
        if canonical not in known:
            raise ValueError(
                f"column mapping item {item!r} names unknown column {canonical!r}; "
                f"map one of {', '.join(known)}"
            )
        mapping[canonical] = source
    return mapping


def split_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated parameter into a tuple of names."""
    return tuple(filter(None, (part.strip() for part in text.split(","))))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, chosen by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transaction file {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt", ".gz"):
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataValidationError(path, ["the file has no rows (not even a header)"]) from None
    raise ValueError(f"{path}: unknown file type {path.suffix!r}; use .csv or .parquet")


def read_transactions(spec: SourceSpec) -> pd.DataFrame:
    """Read, map and validate one transaction file.

    Args:
        spec: Where the file is and how its columns map to the canonical ones.

    Returns:
        A frame with canonical columns, sorted by timestamp.

    Raises:
        DataValidationError: When a rule is broken; every broken rule is listed.
    """
    raw = read_table(spec.path)
    frame = to_canonical(raw, spec)
    validate_transactions(frame, spec)
    frame = frame.sort_values([TIMESTAMP, TRANSACTION_ID], kind="stable", ignore_index=True)
    logger.info("read %s transactions%s from %s", f"{len(frame):,}", _fraud_note(frame), spec.path)
    return frame


def to_canonical(raw: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """Rename a file's columns to canonical names and parse their types."""
    if raw.empty:
        raise DataValidationError(spec.path, ["the file has no rows"])
    source_of = {name: spec.mapping.get(name, name) for name in CANONICAL}
    source_of.update({name: spec.mapping.get(name, name) for name in spec.categoricals})
    _require_columns(raw, spec, source_of)

    frame = pd.DataFrame(index=raw.index)
    problems: list[str] = []
    for name in (*CANONICAL, *spec.categoricals):
        source = source_of[name]
        if source not in raw.columns:
            continue
        where = _where(name, source)
        if name == TIMESTAMP:
            frame[name] = _parse_timestamps(raw[source], spec.timestamp_origin, where, problems)
        elif name in (AMOUNT, LABEL):
            frame[name] = _parse_numbers(raw[source], where, problems)
        else:
            frame[name] = raw[source]
    for source in spec.numeric_features:
        frame[source] = _parse_numbers(raw[source], f"column '{source}'", problems)
    if problems:
        raise DataValidationError(spec.path, problems)

    if TRANSACTION_ID not in frame:
        # Files without ids (the ULB file among them) get their row number as the id.
        frame[TRANSACTION_ID] = np.arange(len(frame), dtype="int64")
    if LABEL in frame and frame[LABEL].notna().all():
        frame[LABEL] = frame[LABEL].astype("int8")
    for name in spec.categoricals:
        frame[name] = frame[name].map(str, na_action="ignore").astype(object)
    if FRAUD_KIND in raw.columns:
        frame[FRAUD_KIND] = raw[FRAUD_KIND]
    return frame


def _require_columns(raw: pd.DataFrame, spec: SourceSpec, source_of: dict[str, str]) -> None:
    needed = [*REQUIRED, *((LABEL,) if spec.labelled else ()), *spec.categoricals]
    needed += [name for name in spec.mapping if name in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID)]
    missing = [_where(name, source_of[name]) for name in needed if source_of[name] not in raw]
    missing += [f"column '{name}'" for name in spec.numeric_features if name not in raw]
    if missing:
        found = ", ".join(map(str, raw.columns[:40]))
        problems = [f"{where}: rule 'required column is present' broken" for where in missing]
        problems.append(f"the file's columns are: {found}; map them with the data.*_columns param")
        raise DataValidationError(spec.path, problems)


def _where(name: str, source: str) -> str:
    return f"column '{name}'" if name == source else f"column '{name}' (file column '{source}')"


def _parse_numbers(values: pd.Series, where: str, problems: list[str]) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = int((numbers.isna() & values.notna()).sum())
    if bad:
        problems.append(f"{where}: rule 'value is a number' broken by {bad:,} rows")
    return numbers


def _parse_timestamps(values: pd.Series, origin: str, where: str, problems: list[str]):
    if pd.api.types.is_numeric_dtype(values):
        stamps = pd.Timestamp(origin) + pd.to_timedelta(values, unit="s")
    else:
        stamps = pd.to_datetime(values, errors="coerce", format="mixed")
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = int((stamps.isna() & values.notna()).sum())
    if bad:
        problems.append(f"{where}: rule 'timestamp is parseable' broken by {bad:,} rows")
    return stamps.astype("datetime64[ns]")


def transaction_schema(frame: pd.DataFrame) -> pa.DataFrameSchema:
    """The value rules every canonical transaction frame must keep."""
    columns = {
        TRANSACTION_ID: pa.Column(
            nullable=False,
            checks=pa.Check(lambda s: ~s.duplicated(keep=False), name="transaction id is unique"),
        ),
        TIMESTAMP: pa.Column("datetime64[ns]", nullable=False),
        AMOUNT: pa.Column(
            "float64",
            nullable=False,
            checks=[
                pa.Check(lambda s: np.isfinite(s), name="amount is finite"),
                pa.Check(lambda s: s >= 0, name="amount is not negative"),
            ],
        ),
    }
    if LABEL in frame:
        columns[LABEL] = pa.Column(
            nullable=False, checks=pa.Check(lambda s: s.isin([0, 1]), name="label is 0 or 1")
        )
    for name in (CUSTOMER_ID, TERMINAL_ID):
        if name in frame:
            columns[name] = pa.Column(nullable=False)
    return pa.DataFrameSchema(columns)


def validate_transactions(frame: pd.DataFrame, spec: SourceSpec) -> None:
    """Check the value rules; raise one error listing every broken rule with its row count."""
    try:
        transaction_schema(frame).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        raise DataValidationError(spec.path, _describe_failures(error, spec)) from None


def _describe_failures(error: pa.errors.SchemaErrors, spec: SourceSpec) -> list[str]:
    cases = error.failure_cases
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        rule = "value is present" if check == "not_nullable" else check
        where = _where(column, spec.mapping.get(column, column))
        rows = group["index"].nunique() if group["index"].notna().any() else len(group)
        problems.append(f"{where}: rule '{rule}' broken by {rows:,} rows")
    return problems


def require_both_classes(frame: pd.DataFrame, where: str) -> None:
    """Refuse training data that lacks fraud or lacks genuine transactions."""
    counts = frame[LABEL].value_counts()
    missing = [name for value, name in ((0, "genuine"), (1, "fraud")) if counts.get(value, 0) == 0]
    if missing:
        raise DataValidationError(
            where,
            [
                f"column 'label': rule 'training data holds both classes' broken: no "
                f"{' and no '.join(missing)} rows among {len(frame):,}"
            ],
        )


def _fraud_note(frame: pd.DataFrame) -> str:
    return f" ({frame[LABEL].mean():.2%} fraud)" if LABEL in frame else ""


def source_spec(
    path: str | Path,
    columns: str = "",
    preset: str = "none",
    categoricals: str = "",
    numeric_features: str = "",
    timestamp_origin: str = "2026-01-05",
    labelled: bool = True,
) -> SourceSpec:
    """Build a :class:`SourceSpec` from the data params, applying a preset if one is named."""
    if preset == "ulb":
        columns = ",".join(filter(None, (ULB_COLUMNS, columns)))
        numeric = (*ULB_FEATURES, *split_list(numeric_features))
        return SourceSpec(Path(path), columns, (), numeric, timestamp_origin, labelled)
    if preset != "none":
        raise ValueError(f"unknown data preset {preset!r}; use 'none' or 'ulb'")
    return SourceSpec(
        Path(path),
        columns,
        split_list(categoricals),
        split_list(numeric_features),
        timestamp_origin,
        labelled,
    )


def split_by_time(
    frame: pd.DataFrame, new_batch_share: float, score_batch_share: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cut one labelled file into history, new batch and score batch by shares of its time span."""
    start, end = frame[TIMESTAMP].min(), frame[TIMESTAMP].max()
    span = end - start
    score_from = end - span * score_batch_share
    new_from = score_from - span * new_batch_share
    history = frame[frame[TIMESTAMP] < new_from]
    new_batch = frame[(frame[TIMESTAMP] >= new_from) & (frame[TIMESTAMP] < score_from)]
    score_batch = frame[frame[TIMESTAMP] >= score_from]
    return tuple(part.reset_index(drop=True) for part in (history, new_batch, score_batch))


def build_raw_data(
    root: str | Path,
    *,
    source: str,
    simulation: SimulationConfig,
    preset: str = "none",
    history_path: str = "",
    history_columns: str = "",
    new_batch_path: str = "",
    new_batch_columns: str = "",
    score_batch_path: str = "",
    score_batch_columns: str = "",
    categoricals: str = "",
    numeric_features: str = "",
    timestamp_origin: str = "2026-01-05",
    new_batch_share: float = 0.15,
    score_batch_share: float = 0.15,
    progress: bool = True,
) -> dict[str, Path]:
    """Make the data stage's four canonical files under ``data/raw``.

    With ``source="synthetic"`` the simulator writes them. With ``csv`` or ``parquet`` the
    user's files are read, mapped and validated; a missing new or score batch is cut from the
    end of the history file by time. Nothing is written until every file has passed.

    Returns:
        The written paths by name: history, new_batch, score_batch, score_labels.
    """
    root = Path(root)
    out_dir = root / paths.RAW_DIR
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
    if source == "synthetic":
        return write_simulated_data(simulation, out_dir, progress=progress)
    if not history_path:
        raise ValueError(f"data.source is {source!r} but data.history_path is empty")

    def spec(path, columns, labelled):
        return source_spec(
            root / path,
            columns,
            preset,
            categoricals,
            numeric_features,
            timestamp_origin,
            labelled,
        )

    history = read_transactions(spec(history_path, history_columns, True))
    require_both_classes(history, str(root / history_path))
    if new_batch_path:
        new_batch = read_transactions(spec(new_batch_path, new_batch_columns, True))
    if score_batch_path:
        score_batch = read_transactions(spec(score_batch_path, score_batch_columns, False))
    if not (new_batch_path and score_batch_path):
        cut = split_by_time(history, new_batch_share, score_batch_share)
        history = cut[0]
        new_batch = new_batch if new_batch_path else cut[1]
        score_batch = score_batch if score_batch_path else cut[2]
    return write_raw_files(out_dir, history, new_batch, score_batch)


def write_raw_files(
    out_dir: Path, history: pd.DataFrame, new_batch: pd.DataFrame, score_batch: pd.DataFrame
) -> dict[str, Path]:
    """Write the canonical files, keeping the score batch's labels (if any) in a file apart."""
    label_columns = [c for c in (TRANSACTION_ID, LABEL, FRAUD_KIND) if c in score_batch]
    if LABEL in score_batch:
        labels = score_batch[label_columns]
    else:
        labels = pd.DataFrame({TRANSACTION_ID: score_batch[TRANSACTION_ID].iloc[:0], LABEL: []})
    unlabelled = score_batch.drop(columns=[LABEL, FRAUD_KIND], errors="ignore")
    frames = {
        "history": history,
        "new_batch": new_batch,
        "score_batch": unlabelled,
        "score_labels": labels,
    }
    written = {}
    for name, frame in frames.items():
        written[name] = write_parquet_atomic(frame, out_dir / f"{name}.parquet")
        logger.info("wrote %s rows%s to %s", f"{len(frame):,}", _fraud_note(frame), written[name])
    return written


def read_canonical(root: str | Path, path: Path) -> pd.DataFrame:
    """Read one of the data stage's canonical files, validated like any input.

    Columns beyond the canonical ones are the features the data stage kept: text columns are
    categorical, numeric ones pass through as numeric features.
    """
    file = Path(root) / path
    # The schema alone says which columns the file holds; the rows are read once, below.
    categoricals, numeric = extra_columns(pq.read_schema(file).empty_table().to_pandas())
    spec = SourceSpec(
        file,
        categoricals=categoricals,
        numeric_features=numeric,
        labelled=path in (paths.HISTORY, paths.NEW_BATCH),
    )
    return read_transactions(spec)


def extra_columns(frame: pd.DataFrame) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split the non-canonical columns of a canonical frame into categorical and numeric ones."""
    extra = [c for c in frame.columns if c not in (*CANONICAL, FRAUD_KIND)]
    numeric = tuple(c for c in extra if pd.api.types.is_numeric_dtype(frame[c]))
    return tuple(c for c in extra if c not in numeric), numeric


def describe_files(root: str | Path) -> pd.DataFrame:
    """One row per canonical file: rows, time span and fraud share (where labelled)."""
    rows = []
    for path in (paths.HISTORY, paths.NEW_BATCH, paths.SCORE_BATCH, paths.SCORE_LABELS):
        frame = pd.read_parquet(Path(root) / path)
        stamps = frame.get(TIMESTAMP)
        rows.append(
            {
                "file": str(path),
                "rows": len(frame),
                "first": stamps.min() if stamps is not None else None,
                "last": stamps.max() if stamps is not None else None,
                "fraud_share": round(float(frame[LABEL].mean()), 5) if LABEL in frame else None,
            }
        )
    return pd.DataFrame(rows)


def fraud_mix(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Frauds per kind in each labelled frame, with each kind's share of that frame's fraud."""
    counts = {
        name: frame.loc[frame[LABEL] == 1, FRAUD_KIND].value_counts()
        for name, frame in frames.items()
        if FRAUD_KIND in frame
    }
    table = pd.DataFrame(counts).fillna(0).astype(int)
    shares = table.div(table.sum()).round(3).add_suffix(" share")
    return table.join(shares).rename_axis("fraud kind")


def plot_daily_volume(frames: dict[str, pd.DataFrame]):
    """Transactions and frauds per day over the named periods, to see rhythm and fraud mix."""
    import matplotlib.pyplot as plt

    figure, (volume_axis, fraud_axis) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for name, frame in frames.items():
        day = frame[TIMESTAMP].dt.floor("D")
        volume_axis.plot(day.value_counts().sort_index(), label=name)
        if FRAUD_KIND in frame:
            fraud = frame[frame[LABEL] == 1]
            daily = fraud.groupby([fraud[TIMESTAMP].dt.floor("D"), FRAUD_KIND]).size()
            for kind, series in daily.unstack(fill_value=0).items():
                fraud_axis.plot(series, label=f"{name}: {kind}", linewidth=1)
    volume_axis.set(ylabel="transactions per day", title="Daily volume by period")
    fraud_axis.set(ylabel="frauds per day", title="Daily fraud by kind")
    volume_axis.legend()
    fraud_axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    return figure


def plot_hourly_rhythm(frame: pd.DataFrame):
    """Share of transactions and of frauds by hour of day."""
    import matplotlib.pyplot as plt

    hours = frame[TIMESTAMP].dt.hour
    figure, axis = plt.subplots(figsize=(8, 3.5))
    axis.plot(hours.value_counts(normalize=True).sort_index(), label="all transactions")
    if LABEL in frame:
        fraud_hours = hours[frame[LABEL] == 1].value_counts(normalize=True).sort_index()
        axis.plot(fraud_hours, label="fraud")
    axis.set(xlabel="hour of day", ylabel="share", title="Daily rhythm")
    axis.legend()
    figure.tight_layout()
    return figure
