"""Which model and which features: test-window quality and fit time per candidate.

Two data sets, both split out of time (a training window, a gap as long as the label delay,
a later test window):

- the built-in data: the default simulation's history, with the point-in-time card and
  terminal features (train 56 days, delay 7, test 21, as in params.yaml), and with the raw
  columns only (amount, time of day and week, categoricals) for the textbook baseline;
- data with the ULB credit-card columns (Time, V1..V28, Amount, Class; 284,807 rows over two
  days, 0.172 % fraud, from ``simulate.ulb_like_frame``), read through the ``ulb`` preset:
  train on the first day, test on the second.

Histogram gradient boosting is tuned first on a validation window inside the training window
(train 35 days, delay 7, validate 14), never on the test window; the setting with the best
validation average precision is then refitted on the whole training window. Fit times are
medians of ``--repeats`` fits (the machine is shared; quality does not change between fits).

Prints the tables and writes ``benchmarks/model_choice.json``. From the project root:
``python benchmarks/model_choice.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.metrics import average_precision_score

from fraudops.data import read_transactions, source_spec
from fraudops.evaluation import evaluate_scores
from fraudops.features import add_features, out_of_time_split
from fraudops.model import build_pipeline, fit, fraud_scores
from fraudops.simulate import SimulationConfig, simulate_transactions, ulb_like_frame

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import machine  # noqa: E402

SEED = 42
TOP_K = 30
SPLIT = {"train_days": 56, "delay_days": 7, "test_days": 21}
VALIDATION = {"train_days": 35, "delay_days": 7, "test_days": 14}
ULB_SPLIT = {"train_days": 1, "delay_days": 0, "test_days": 1}
BEHAVIOUR = {"card_windows": (1, 7, 30), "terminal_windows": (1, 7, 30), "label_delay_days": 7}
RAW = {"card_windows": ()}

# The textbook forest, a faster forest (fewer, smaller bootstrap samples per tree), gradient
# boosting as scikit-learn ships it (early stopping on 10% of rows, scored by the loss), and
# the grid the tuned boosting is chosen from.
FOREST_150 = {"n_estimators": 150}
FAST_FOREST = {"n_estimators": 100, "max_samples": 0.1, "min_samples_leaf": 2}
LOGISTIC = {"C": 1.0, "max_iter": 2000}
HGB_SHIPPED = {}
HGB_GRID = {
    "learning_rate": (0.05, 0.1),
    "max_iter": (150, 300),
    "min_samples_leaf": (20, 50),
    "l2_regularization": (0.0, 1.0),
}
HGB_FIXED = {"max_leaf_nodes": 31, "early_stopping": "off"}
OUTPUT = HERE / "model_choice.json"


def simulated_history() -> pd.DataFrame:
    """The labelled history of the default simulation."""
    log = simulate_transactions(SimulationConfig(), progress=False)
    return log[log["period"] == "history"].drop(columns="period").reset_index(drop=True)


def ulb_shaped(scratch: Path) -> pd.DataFrame:
    """A file with the ULB columns, read as any user's file with the ``ulb`` preset."""
    path = scratch / "creditcard.csv"
    ulb_like_frame(n_rows=284_807, fraud_rate=0.00172, seed=SEED).to_csv(path, index=False)
    return read_transactions(source_spec(path, preset="ulb"))


def tune_boosting(frame, features) -> tuple[dict, list[dict]]:
    """The boosting setting with the best validation AP inside the training window."""
    training_window = out_of_time_split(frame, **SPLIT).train
    split = out_of_time_split(training_window, **VALIDATION)
    trials = []
    for values in itertools.product(*HGB_GRID.values()):
        settings = {**HGB_FIXED, **dict(zip(HGB_GRID, values, strict=True))}
        pipeline = build_pipeline(features, "hist_gradient_boosting", settings, SEED)
        seconds = fit(pipeline, split.train, features)
        scores = fraud_scores(pipeline, split.test, features)
        ap = average_precision_score(split.test["label"], scores)
        trials.append(
            {**settings, "validation_ap": round(ap, 4), "fit_seconds": round(seconds, 1)}
        )
    best = max(trials, key=lambda trial: trial["validation_ap"])
    chosen = {key: best[key] for key in (*HGB_FIXED, *HGB_GRID)}
    return chosen, trials


def measure(split, features, model_type: str, hyperparameters: dict, repeats: int) -> dict:
    """Fit one candidate ``repeats`` times on the training window and score the test window."""
    seconds = []
    for _ in range(repeats):
        pipeline = build_pipeline(features, model_type, hyperparameters, SEED)
        seconds.append(fit(pipeline, split.train, features))
    scores = fraud_scores(pipeline, split.test, features)
    has_cards = "customer_id" in split.test
    metrics = evaluate_scores(
        split.test,
        scores,
        TOP_K,
        {"threshold": 0.5},
        train_frame=split.train if has_cards else None,
        delay_days=SPLIT["delay_days"],
    )
    classifier = pipeline[-1]
    return {
        "model_type": model_type,
        "hyperparameters": hyperparameters,
        "features": len(features.all),
        "average_precision": round(metrics["average_precision"], 4),
        "roc_auc": round(metrics["roc_auc"], 4),
        f"card_precision_at_{TOP_K}": round(metrics[f"card_precision_at_{TOP_K}"], 4)
        if has_cards
        else None,
        "fit_seconds": round(statistics.median(seconds), 2),
        "fit_seconds_all": [round(s, 2) for s in seconds],
        "boosting_iterations": getattr(classifier, "n_iter_", None)
        if model_type == "hist_gradient_boosting"
        else None,
        "train_rows": len(split.train),
        "test_rows": len(split.test),
        "test_frauds": metrics["test_frauds"],
    }


def built_in_candidates(tuned: dict) -> dict:
    """name: (model type, hyperparameters, features)."""
    return {
        "logistic regression": ("logistic_regression", LOGISTIC, "behaviour"),
        "random forest 150 trees, raw columns": ("random_forest", FOREST_150, "raw"),
        "random forest 150 trees": ("random_forest", FOREST_150, "behaviour"),
        "random forest 100 trees, 10% samples": ("random_forest", FAST_FOREST, "behaviour"),
        "boosting, scikit-learn defaults": ("hist_gradient_boosting", HGB_SHIPPED, "behaviour"),
        "boosting, tuned": ("hist_gradient_boosting", tuned, "behaviour"),
    }


def ulb_candidates(tuned: dict) -> dict:
    return {
        "logistic regression": ("logistic_regression", LOGISTIC),
        "random forest 150 trees": ("random_forest", FOREST_150),
        "random forest 100 trees, 10% samples": ("random_forest", FAST_FOREST),
        "boosting, scikit-learn defaults": ("hist_gradient_boosting", HGB_SHIPPED),
        "boosting, tuned": ("hist_gradient_boosting", tuned),
    }


def print_table(title: str, results: dict) -> None:
    columns = ["features", "average_precision", "roc_auc", f"card_precision_at_{TOP_K}"]
    columns += ["fit_seconds", "boosting_iterations"]
    table = pd.DataFrame(results).T[columns]
    first = next(iter(results.values()))
    print(
        f"\n{title}: train {first['train_rows']:,} rows, test {first['test_rows']:,} rows "
        f"({first['test_frauds']} frauds)"
    )
    print(table.to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fits per candidate")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    arguments = parser.parse_args()

    history = simulated_history()
    featured = {
        name: add_features(history, **settings)
        for name, settings in (("behaviour", BEHAVIOUR), ("raw", RAW))
    }
    tuned, trials = tune_boosting(*featured["behaviour"])
    print("boosting grid on the validation window (best first):")
    print(pd.DataFrame(trials).sort_values("validation_ap", ascending=False).to_string())
    built_in = {}
    for name, (model_type, settings, kind) in built_in_candidates(tuned).items():
        frame, features = featured[kind]
        split = out_of_time_split(frame, **SPLIT)
        built_in[name] = measure(split, features, model_type, settings, arguments.repeats)
        print(
            f"{name}: AP {built_in[name]['average_precision']}, "
            f"fit {built_in[name]['fit_seconds']} s",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="fraudops-ulb-") as scratch:
        ulb_frame, ulb_features = add_features(ulb_shaped(Path(scratch)), **RAW)
    ulb_split = out_of_time_split(ulb_frame, **ULB_SPLIT)
    ulb = {
        name: measure(ulb_split, ulb_features, model_type, settings, arguments.repeats)
        for name, (model_type, settings) in ulb_candidates(tuned).items()
    }

    print_table("built-in data, out-of-time test window", built_in)
    print_table("ULB columns, second day as test window", ulb)
    arguments.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "repeats": arguments.repeats,
                "seed": SEED,
                "built_in": {"split": SPLIT, "validation": VALIDATION, "results": built_in},
                "boosting_grid": trials,
                "tuned_boosting": tuned,
                "ulb_columns": {"split": ULB_SPLIT, "results": ulb},
                "card_precision": f"at {TOP_K}, known compromised cards left out",
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
