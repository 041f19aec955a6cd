"""Tests of the model Pipeline: fitting, unseen inputs, imputation and safe saving."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fraudops import paths
from fraudops.model import (
    MODEL_TYPES,
    ModelIntegrityError,
    build_pipeline,
    classifier,
    fit,
    fraud_scores,
    load_model,
    save_model,
    select_hyperparameters,
    sha256,
    to_text,
    train_model,
)

# Small settings so each type fits in well under a second on the small training window.
HYPERPARAMETERS = {
    "random_forest": {"n_estimators": 25, "min_samples_leaf": 2},
    "hist_gradient_boosting": {"max_iter": 20, "early_stopping": "off"},
    "logistic_regression": {"max_iter": 1000},
}


@pytest.fixture(scope="module")
def fitted(featured):
    """Each model type fitted on the training window, with the test rows and feature set."""
    _, feature_set, split = featured
    pipelines = {}
    for model_type in MODEL_TYPES:
        pipeline = build_pipeline(feature_set, model_type, HYPERPARAMETERS[model_type], seed=1)
        fit(pipeline, split.train, feature_set)
        pipelines[model_type] = pipeline
    return pipelines, split, feature_set


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_model_type_gives_probabilities_that_rank_fraud_first(fitted, model_type) -> None:
    pipelines, split, feature_set = fitted
    scores = fraud_scores(pipelines[model_type], split.test, feature_set)

    assert scores.name == "score"
    assert list(scores.index) == list(split.test.index)
    assert scores.between(0.0, 1.0).all()
    assert scores.nunique() > 10
    assert roc_auc_score(split.test["label"], scores) > 0.75


def _odd_rows(test: pd.DataFrame) -> pd.DataFrame:
    rows = test.head(40).copy()
    rows["channel"] = "carrier_pigeon"
    rows["merchant_category"] = None
    rows["tx_type"] = np.nan
    rows.loc[rows.index[::2], "amount"] = np.nan
    rows["card_seconds_since_previous"] = np.nan
    return rows


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_unseen_categories_and_missing_numbers_are_scored(fitted, model_type) -> None:
    pipelines, split, feature_set = fitted
    scores = fraud_scores(pipelines[model_type], _odd_rows(split.test), feature_set)
    assert len(scores) == 40
    assert np.isfinite(scores).all()
    assert scores.between(0.0, 1.0).all()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_imputer_learns_medians_from_training_rows_only(fitted, model_type) -> None:
    pipelines, split, feature_set = fitted
    numeric = list(feature_set.numeric)
    imputer = pipelines[model_type].named_steps["prepare"].named_transformers_["numeric"][0]
    train_medians = split.train[numeric].median().to_numpy()
    everything = pd.concat([split.train, split.test])[numeric].median().to_numpy()

    np.testing.assert_array_equal(imputer.statistics_, train_medians)
    assert not np.array_equal(imputer.statistics_, everything)


@pytest.mark.parametrize("column", ["amount", "card_seconds_since_previous"])
def test_missing_number_scores_as_the_training_median(fitted, column) -> None:
    pipelines, split, feature_set = fitted
    pipeline = pipelines["logistic_regression"]
    rows = split.test.head(20)
    missing = rows.assign(**{column: np.nan})
    at_median = rows.assign(**{column: split.train[column].median()})

    np.testing.assert_allclose(
        fraud_scores(pipeline, missing, feature_set),
        fraud_scores(pipeline, at_median, feature_set),
        rtol=1e-12,
    )


def test_to_text_keeps_missing_values_missing() -> None:
    values = pd.DataFrame({"channel": ["pos", None, np.nan, 3]})
    assert to_text(values)["channel"].tolist() == ["pos", None, None, 3]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_save_and_load_give_identical_predictions(tmp_path, fitted, model_type) -> None:
    pipelines, split, feature_set = fitted
    model_path, card_path = tmp_path / "model.skops", tmp_path / "model.json"
    card = save_model(pipelines[model_type], model_path, card_path, {"model_type": model_type})
    loaded, loaded_card = load_model(model_path, card_path)

    assert card == loaded_card
    assert card["sha256"] == sha256(model_path)
    assert card["file"] == "model.skops"
    assert card["model_type"] == model_type
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.skops"]
    np.testing.assert_array_equal(
        fraud_scores(loaded, split.test, feature_set),
        fraud_scores(pipelines[model_type], split.test, feature_set),
    )


def _flip_a_byte(model_path, other_path) -> None:
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_path.write_bytes(bytes(data))


def _replace_with_other_model(model_path, other_path) -> None:
    shutil.copyfile(other_path, model_path)


@pytest.mark.parametrize("tamper", [_flip_a_byte, _replace_with_other_model])
def test_model_altered_after_saving_is_refused(tmp_path, fitted, tamper) -> None:
    pipelines = fitted[0]
    model_path, card_path = tmp_path / "model.skops", tmp_path / "model.json"
    save_model(pipelines["logistic_regression"], model_path, card_path, {})
    other = tmp_path / "other"
    other.mkdir()
    save_model(pipelines["random_forest"], other / "model.skops", other / "model.json", {})

    tamper(model_path, other / "model.skops")

    with pytest.raises(ModelIntegrityError, match="refusing to load it") as caught:
        load_model(model_path, card_path)
    assert str(model_path) in str(caught.value)
    assert sha256(model_path) in str(caught.value)


@pytest.mark.parametrize("model_type", ["xgboost", "Random_Forest", ""])
def test_unknown_model_type_is_refused(featured, model_type) -> None:
    feature_set = featured[1]
    with pytest.raises(ValueError, match=f"unknown model.type {model_type!r}"):
        build_pipeline(feature_set, model_type, {}, seed=1)
    with pytest.raises(ValueError, match=f"unknown model.type {model_type!r}"):
        select_hyperparameters(model_type, **HYPERPARAMETERS)


def test_select_hyperparameters_returns_a_copy_of_the_types_settings() -> None:
    chosen = select_hyperparameters("random_forest", **HYPERPARAMETERS)
    assert chosen == HYPERPARAMETERS["random_forest"]
    chosen["n_estimators"] = 1
    assert HYPERPARAMETERS["random_forest"]["n_estimators"] == 25


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("off", False), ("on", True), ("false", False), ("true", True), (False, False), (True, True)],
)
def test_early_stopping_setting_reaches_the_classifier(setting, expected) -> None:
    model = classifier("hist_gradient_boosting", {"early_stopping": setting}, seed=3)
    assert isinstance(model, HistGradientBoostingClassifier)
    assert model.early_stopping is expected
    assert model.random_state == 3


def test_bad_early_stopping_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an on/off setting, got 'sometimes'"):
        classifier("hist_gradient_boosting", {"early_stopping": "sometimes"}, seed=3)


def test_early_stopping_on_stops_before_max_iter(featured) -> None:
    _, feature_set, split = featured
    settings = {"max_iter": 200, "early_stopping": "on", "n_iter_no_change": 3}
    pipeline = build_pipeline(feature_set, "hist_gradient_boosting", settings, seed=1)
    fit(pipeline, split.train, feature_set)
    assert pipeline[-1].n_iter_ < 200


def test_train_model_saves_model_and_card(project) -> None:
    card = train_model(
        project,
        model_type="logistic_regression",
        hyperparameters=HYPERPARAMETERS["logistic_regression"],
        seed=4,
    )
    train = pd.read_parquet(project / paths.TRAIN)
    loaded, loaded_card = load_model(project / paths.MODEL, project / paths.MODEL_CARD)

    assert loaded_card == card
    assert card["training_rows"] == len(train)
    assert card["training_fraud_rate"] == pytest.approx(train["label"].mean())
    assert card["training_window"] == [
        str(train["timestamp"].min()),
        str(train["timestamp"].max()),
    ]
    assert card["seed"] == 4
    assert loaded[-1].random_state == 4


def test_train_model_names_the_stage_that_makes_missing_inputs(new_project) -> None:
    with pytest.raises(FileNotFoundError, match="'preprocess' stage makes it"):
        train_model(new_project(), model_type="random_forest", hyperparameters={}, seed=1)
