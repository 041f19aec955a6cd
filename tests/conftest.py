"""Shared fixtures: a small simulated transaction log and tiny project folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from fraudops.data import build_raw_data
from fraudops.features import add_features, build_datasets, out_of_time_split
from fraudops.model import train_model
from fraudops.retraining import PromotionRule, retrain
from fraudops.simulate import SimulationConfig, simulate_transactions

# Small enough to simulate in a fraction of a second, large enough to hold every fraud kind.
SMALL = SimulationConfig(
    seed=3, n_customers=300, n_terminals=150, history_days=40, new_days=10, score_days=7
)
# A split that fits inside the 40-day history of SMALL.
SPLIT = {"train_days": 20, "delay_days": 3, "test_days": 10}


def _make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("seed: 42\n")
    return root


@pytest.fixture(scope="session")
def small_config() -> SimulationConfig:
    return SMALL


@pytest.fixture(scope="session")
def split_settings() -> dict:
    return dict(SPLIT)


@pytest.fixture()
def new_project(tmp_path: Path):
    """Make an empty fraudops project (the two marker files) under ``tmp_path``."""
    return lambda name="project": _make_project(tmp_path / name)


@pytest.fixture(scope="session")
def transactions() -> pd.DataFrame:
    """The whole simulated log of SMALL, in canonical columns (period dropped)."""
    return simulate_transactions(SMALL, progress=False).drop(columns="period")


@pytest.fixture(scope="session")
def history(transactions: pd.DataFrame) -> pd.DataFrame:
    """The history period of SMALL."""
    end = pd.Timestamp(SMALL.start) + pd.Timedelta(days=SMALL.history_days)
    return transactions[transactions["timestamp"] < end].reset_index(drop=True)


@pytest.fixture(scope="session")
def featured(history: pd.DataFrame):
    """The history with its features, the feature set, and the out-of-time split."""
    frame, feature_set = add_features(history)
    return frame, feature_set, out_of_time_split(frame, **SPLIT)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project folder with SMALL's raw data and its processed training and test files."""
    root = _make_project(tmp_path / "project")
    build_raw_data(root, source="synthetic", simulation=SMALL, progress=False)
    build_datasets(root, **SPLIT)
    return root


# A deliberately weak first model (a single stump), so a retrained challenger is clearly better.
FIRST_MODEL = {
    "model_type": "random_forest",
    "hyperparameters": {"n_estimators": 1, "max_depth": 1},
    "seed": 1,
}
# Retrain settings that fit SMALL's 10-day new batch; the challenger is a quick logistic model.
RETRAIN = {
    "window": "all",
    "window_days": 60,
    "eval_days": 5,
    "delay_days": 2,
    "rule": PromotionRule(),
    "model_type": "logistic_regression",
    "hyperparameters": {"max_iter": 1000},
    "evaluation_settings": {
        "top_k": 30,
        "threshold_policy": "alert_budget",
        "alert_budget": 30,
        "target_precision": 0.5,
        "cost_false_positive": 5,
        "cost_false_negative": 100,
    },
    "card_windows": "1,7,30",
    "seed": 1,
}


@pytest.fixture(scope="session")
def retrain_settings() -> dict:
    """Keyword arguments of ``retraining.retrain`` for the small projects (copy before editing)."""
    return dict(RETRAIN)


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after the data, preprocess and train stages; copy it, never change it."""
    root = _make_project(tmp_path_factory.mktemp("trained") / "project")
    build_raw_data(root, source="synthetic", simulation=SMALL, progress=False)
    build_datasets(root, **SPLIT)
    train_model(root, **FIRST_MODEL)
    return root


@pytest.fixture(scope="session")
def retrained_template(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained project after one retrain (v0001 first model, v0002 challenger); copy it."""
    root = shutil.copytree(trained_template, tmp_path_factory.mktemp("retrained") / "project")
    retrain(root, **RETRAIN)
    return root


@pytest.fixture()
def trained_project(trained_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained project, with no registry yet."""
    return shutil.copytree(trained_template, tmp_path / "project")


@pytest.fixture()
def retrained_project(retrained_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the project after its first retrain."""
    return shutil.copytree(retrained_template, tmp_path / "project")


# The workspace, whose params.yaml, dvc.yaml and watchlist the scoring projects copy.
WORKSPACE = Path(__file__).resolve().parents[1]
# The scoring projects' challenger: a few seeded boosting rounds, so it is quick and promoted.
SCORING_CHALLENGER = {"model_type": "hist_gradient_boosting", "hyperparameters": {"max_iter": 30}}


@pytest.fixture(scope="session")
def scoring_template(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project ready for `fraudops score`: the workspace's settings and watchlist, an HGB
    production model with its threshold (v0002, v0001 the first model); copy it."""
    root = shutil.copytree(trained_template, tmp_path_factory.mktemp("scoring") / "project")
    for name in ("params.yaml", "dvc.yaml", "data/reference/watchlist.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WORKSPACE / name, root / name)
    retrain(root, **{**RETRAIN, **SCORING_CHALLENGER})
    return root


@pytest.fixture()
def scoring_project(scoring_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the scoring project."""
    return shutil.copytree(scoring_template, tmp_path / "scoring_project")
