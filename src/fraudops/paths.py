"""Where things live: the project root, the pipeline's files, and the parameters."""

from __future__ import annotations

from pathlib import Path

import yaml

MARKERS = ("dvc.yaml", "params.yaml")

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
MODELS_DIR = Path("models")
REPORTS_DIR = Path("reports")

HISTORY = RAW_DIR / "history.parquet"
NEW_BATCH = RAW_DIR / "new_batch.parquet"
SCORE_BATCH = RAW_DIR / "score_batch.parquet"
SCORE_LABELS = RAW_DIR / "score_labels.parquet"

TRAIN = PROCESSED_DIR / "train.parquet"
TEST = PROCESSED_DIR / "test.parquet"
FEATURES = PROCESSED_DIR / "features.json"

MODEL = MODELS_DIR / "model.skops"
MODEL_CARD = MODELS_DIR / "model.json"
THRESHOLD = MODELS_DIR / "threshold.json"

METRICS = REPORTS_DIR / "metrics.json"
AUDIT_LOG = REPORTS_DIR / "audit" / "audit.jsonl"
PLOTS_DIR = REPORTS_DIR / "plots"
PREQUENTIAL = PLOTS_DIR / "prequential.csv"  # the prequential folds, one row each
FIGURES_DIR = REPORTS_DIR / "figures"

# Which stage makes each input, so a missing file can say what to run.
MADE_BY = {
    HISTORY: "data",
    NEW_BATCH: "data",
    SCORE_BATCH: "data",
    SCORE_LABELS: "data",
    TRAIN: "preprocess",
    TEST: "preprocess",
    FEATURES: "preprocess",
    MODEL: "train",
    MODEL_CARD: "train",
    THRESHOLD: "evaluate",
}


def project_root(start: str | Path | None = None) -> Path:
    """Find the project root: the nearest folder at or above ``start`` holding dvc.yaml.

    Notebooks call this so they behave the same when papermill runs them from the root,
    when nbval runs them, and when a person opens them from ``notebooks/``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in MARKERS):
            return folder
    raise FileNotFoundError(
        f"no fraudops project (a folder with {' and '.join(MARKERS)}) at or above {here}"
    )


def load_params(root: str | Path | None = None) -> dict:
    """Read params.yaml from the project root."""
    root = Path(root) if root else project_root()
    return yaml.safe_load((root / "params.yaml").read_text())


def require_inputs(root: str | Path, *paths: Path) -> None:
    """Fail clearly when a stage's inputs are missing, naming the stage that makes them."""
    missing = [path for path in paths if not (Path(root) / path).exists()]
    if not missing:
        return
    lines = []
    for path in missing:
        stage = MADE_BY.get(path, "an earlier")
        lines.append(
            f"{path} is missing; the '{stage}' stage makes it: run `dvc repro {stage}` "
            f"or open and run its notebook first"
        )
    raise FileNotFoundError("\n".join(lines))


# Where the project's code is published; Colab clones it from here.
REPOSITORY = "https://github.com/fraudops/fraudops"


def as_flag(value: object) -> bool:
    """Read an on/off setting given as a bool or as text (DVC renders false as 'false')."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ValueError(f"expected an on/off setting, got {value!r}")
