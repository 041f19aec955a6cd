"""Which model and which features: test-window metrics and fit times on the built-in data.

Simulates the default history (``SimulationConfig()``), builds point-in-time features on it,
splits it out of time as params.yaml does (train 56 days, delay 7, test 21) and compares:

- hist_gradient_boosting with the card and the terminal features (the defaults),
- hist_gradient_boosting with the card features only,
- a 150-tree random forest on the raw columns only (amount, time of day and week,
  categoricals).

Prints a table and writes ``benchmarks/model_choice.json``. Run from the project root:
``python benchmarks/model_choice.py``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pandas as pd
import sklearn

from fraudops.evaluation import evaluate_scores
from fraudops.features import add_features, out_of_time_split
from fraudops.model import build_pipeline, fit, fraud_scores
from fraudops.simulate import SimulationConfig, simulate_transactions

SEED = 42
SPLIT = {"train_days": 56, "delay_days": 7, "test_days": 21}
TOP_K = 30
HGB = {
    "learning_rate": 0.05,
    "max_iter": 300,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 50,
    "l2_regularization": 1.0,
    "early_stopping": "off",
}
FOREST = {"n_estimators": 150}
# name: (model type, hyperparameters, keyword arguments of add_features)
CANDIDATES = {
    "hgb, card + terminal features": (
        "hist_gradient_boosting",
        HGB,
        {"card_windows": (1, 7, 30), "terminal_windows": (1, 7, 30), "label_delay_days": 7},
    ),
    "hgb, card features only": ("hist_gradient_boosting", HGB, {"card_windows": (1, 7, 30)}),
    "random forest, raw columns only": ("random_forest", FOREST, {"card_windows": ()}),
}
OUTPUT = Path(__file__).resolve().parent / "model_choice.json"


def simulated_history() -> pd.DataFrame:
    """The labelled history of the default simulation."""
    log = simulate_transactions(SimulationConfig(), progress=False)
    return log[log["period"] == "history"].drop(columns="period").reset_index(drop=True)


def measure(history: pd.DataFrame, model_type: str, hyperparameters: dict, settings: dict):
    """Fit one candidate on the training window and score the test window."""
    frame, features = add_features(history, **settings)
    split = out_of_time_split(frame, **SPLIT)
    pipeline = build_pipeline(features, model_type, hyperparameters, SEED)
    seconds = fit(pipeline, split.train, features)
    scores = fraud_scores(pipeline, split.test, features)
    metrics = evaluate_scores(
        split.test,
        scores,
        TOP_K,
        {"threshold": 0.5},
        train_frame=split.train,
        delay_days=SPLIT["delay_days"],
    )
    return {
        "model_type": model_type,
        "features": len(features.all),
        "average_precision": round(metrics["average_precision"], 4),
        "roc_auc": round(metrics["roc_auc"], 4),
        f"card_precision_at_{TOP_K}": round(metrics[f"card_precision_at_{TOP_K}"], 4),
        "fit_seconds": round(seconds, 2),
        "train_rows": len(split.train),
        "test_rows": len(split.test),
        "test_frauds": metrics["test_frauds"],
    }


def main() -> None:
    history = simulated_history()
    results = {name: measure(history, *candidate) for name, candidate in CANDIDATES.items()}
    table = pd.DataFrame(results).T
    print(table.drop(columns=["train_rows", "test_rows", "test_frauds"]).to_string())
    first = next(iter(results.values()))
    print(
        f"train {first['train_rows']:,} rows, test {first['test_rows']:,} rows "
        f"({first['test_frauds']} frauds)"
    )
    OUTPUT.write_text(
        json.dumps(
            {
                "simulation": "SimulationConfig() defaults, history period",
                "split": SPLIT,
                "seed": SEED,
                "card_precision": f"at {TOP_K}, known compromised cards left out",
                "machine": {
                    "python": platform.python_version(),
                    "sklearn": sklearn.__version__,
                    "processor": platform.processor() or platform.machine(),
                },
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
