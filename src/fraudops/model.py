"""The model: one scikit-learn Pipeline of transforms and classifier, saved safely.

Imputation, encoding and scaling are steps of the same Pipeline as the classifier, so they
are learned from training rows only and scoring applies exactly the same transforms. Models
are saved with skops, which runs no code on loading, and their SHA-256 is recorded beside
them; a file whose hash does not match is refused.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from fraudops import paths
from fraudops.data import LABEL, TIMESTAMP
from fraudops.features import FeatureSet, read_feature_set, read_feature_settings
from fraudops.io import atomic_path, file_digest, write_json_atomic

logger = logging.getLogger(__name__)

MODEL_TYPES = ("random_forest", "hist_gradient_boosting", "logistic_regression")
MISSING_CATEGORY = "missing"

# The only types a model file may hold; anything else is refused on loading.
TRUSTED_TYPES = [
    "fraudops.model.to_text",
    "numpy.dtype",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.compose._column_transformer._RemainderColsList",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.tree._tree.Tree",
]


class ModelIntegrityError(RuntimeError):
    """A model file does not match the hash recorded when it was saved."""


def to_text(values):
    """Turn categorical values into plain text (missing stays missing) for the encoder."""
    return values.astype(object).where(pd.notna(values), None)


def build_pipeline(
    features: FeatureSet,
    model_type: str,
    hyperparameters: dict,
    seed: int,
) -> Pipeline:
    """The transforms and classifier for ``model_type``, as one unfitted Pipeline.

    Args:
        features: The numeric and categorical input columns.
        model_type: One of :data:`MODEL_TYPES`.
        hyperparameters: Keyword arguments of the classifier.
        seed: Random seed of the classifier.
    """
    numeric_steps = [SimpleImputer(strategy="median")]
    if model_type == "logistic_regression":
        numeric_steps.append(StandardScaler())
    categorical_steps = [
        FunctionTransformer(to_text, feature_names_out="one-to-one"),
        SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=False),
    ]
    transformers = [("numeric", make_pipeline(*numeric_steps), list(features.numeric))]
    if features.categorical:
        categorical = make_pipeline(*categorical_steps)
        transformers.append(("categorical", categorical, list(features.categorical)))
    prepare = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline(
        [("prepare", prepare), ("classifier", classifier(model_type, hyperparameters, seed))]
    )


def classifier(model_type: str, hyperparameters: dict, seed: int):
    """An unfitted classifier of ``model_type`` that weighs the rare fraud class up."""
    if model_type == "random_forest":
        return RandomForestClassifier(
            class_weight="balanced_subsample", random_state=seed, n_jobs=-1, **hyperparameters
        )
    if model_type == "hist_gradient_boosting":
        settings = dict(hyperparameters)
        if "early_stopping" in settings:
            settings["early_stopping"] = paths.as_flag(settings["early_stopping"])
        return HistGradientBoostingClassifier(
            class_weight="balanced", random_state=seed, **settings
        )
    if model_type == "logistic_regression":
        return LogisticRegression(class_weight="balanced", random_state=seed, **hyperparameters)
    raise ValueError(f"unknown model.type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")


def select_hyperparameters(model_type: str, **by_type: dict) -> dict:
    """The hyperparameters of ``model_type`` among those given for every type."""
    if model_type not in by_type:
        raise ValueError(f"unknown model.type {model_type!r}; use one of {', '.join(by_type)}")
    return dict(by_type[model_type])


def fit(pipeline: Pipeline, train: pd.DataFrame, features: FeatureSet) -> float:
    """Fit ``pipeline`` on the training rows; return the seconds it took."""
    started = time.perf_counter()
    pipeline.fit(train[list(features.all)], train[LABEL])
    seconds = time.perf_counter() - started
    # A forest scoring on several threads adds up its trees in a varying order, so the same
    # rows get scores that differ in the last bits from run to run; score on one thread.
    if "n_jobs" in pipeline[-1].get_params():
        pipeline[-1].set_params(n_jobs=1)
    logger.info(
        "fitted %s on %s rows in %.1f s", type(pipeline[-1]).__name__, f"{len(train):,}", seconds
    )
    return seconds


def fraud_scores(pipeline: Pipeline, frame: pd.DataFrame, features: FeatureSet) -> pd.Series:
    """The model's fraud probability for each row of ``frame``."""
    scores = pipeline.predict_proba(frame[list(features.all)])[:, 1]
    return pd.Series(scores, index=frame.index, name="score")


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as hex."""
    return file_digest(path, "sha256")


def save_model(
    pipeline: Pipeline, model_path: str | Path, card_path: str | Path, card: dict
) -> dict:
    """Save ``pipeline`` with skops and its card (metadata and SHA-256) as JSON, atomically."""
    with atomic_path(model_path) as tmp:
        sio.dump(pipeline, tmp)
        digest = sha256(tmp)
        card = {**card, "sha256": digest, "file": Path(model_path).name}
        write_json_atomic(card, card_path)
    logger.info("saved model to %s (sha256 %s)", model_path, digest[:12])
    return card


def load_model(model_path: str | Path, card_path: str | Path) -> tuple[Pipeline, dict]:
    """Load a model saved by :func:`save_model`, refusing it if its hash does not match.

    Raises:
        ModelIntegrityError: The file's SHA-256 differs from the one in its card.
    """
    card = json.loads(Path(card_path).read_text())
    actual = sha256(model_path)
    if actual != card["sha256"]:
        raise ModelIntegrityError(
            f"{model_path} has SHA-256 {actual}, but {card_path} records {card['sha256']}: "
            f"the file was changed or replaced after training; refusing to load it. "
            f"Rerun `dvc repro train` or `dvc checkout {model_path}`."
        )
    untrusted = sorted(set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ModelIntegrityError(f"{model_path} holds types not on the trusted list: {untrusted}")
    return sio.load(model_path, trusted=TRUSTED_TYPES), card


def train_model(root, *, model_type: str, hyperparameters: dict, seed: int) -> dict:
    """The train stage: fit the chosen model on the training file and save it with its card."""
    root = Path(root)
    paths.require_inputs(root, paths.TRAIN, paths.FEATURES)
    train = pd.read_parquet(root / paths.TRAIN)
    features = read_feature_set(root)
    pipeline = build_pipeline(features, model_type, hyperparameters, seed)
    seconds = fit(pipeline, train, features)
    card = {
        "model_type": model_type,
        "hyperparameters": hyperparameters,
        "seed": seed,
        "features": features.to_dict(),
        "feature_settings": read_feature_settings(root),
        "training_window": [str(train[TIMESTAMP].min()), str(train[TIMESTAMP].max())],
        "training_rows": len(train),
        "training_fraud_rate": float(train[LABEL].mean()),
        "fit_seconds": round(seconds, 2),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return save_model(pipeline, root / paths.MODEL, root / paths.MODEL_CARD, card)
