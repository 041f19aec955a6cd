"""Tests of the model registry: versions, cards, production, rollback and integrity checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudops import paths
from fraudops.features import FeatureSet
from fraudops.model import ModelIntegrityError, fraud_scores, sha256
from fraudops.registry import (
    PRODUCTION_DIR,
    REGISTRY_DIR,
    REGISTRY_FILE,
    Registry,
    RegistryError,
    data_version,
    file_md5,
)

CARD = {
    "model_type": "random_forest",
    "hyperparameters": {"n_estimators": 1, "max_depth": 1},
    "features": {"numeric": ["amount"], "categorical": ["channel"]},
    "training_window": ["2026-01-05 00:00:00", "2026-01-25 00:00:00"],
    "training_rows": 12345,
    "training_fraud_rate": 0.0123,
    "data_version": {"data/raw/history.parquet": "0" * 32},
    "metrics": {"average_precision": 0.612345, "test_rows": 2370},
    "threshold": {"policy": "alert_budget", "threshold": 0.4321},
    "decision": {"outcome": "promote", "reason": "promoted the challenger: +0.1000"},
}
FILES = ("model.skops", "model.json", "MODEL_CARD.md")


def _register(root: Path, times: int, **card) -> Registry:
    registry = Registry(root)
    for _ in range(times):
        registry.register(root / paths.MODEL, {**CARD, **card})
    return registry


def test_an_empty_registry_has_no_versions_and_nothing_to_publish(tmp_path) -> None:
    registry = Registry(tmp_path)

    assert registry.state() == {"production": None, "pinned": False, "versions": []}
    assert registry.production() is None
    with pytest.raises(RegistryError, match="no model is in production yet"):
        registry.publish()
    with pytest.raises(RegistryError, match="known: none"):
        registry.card("v0001")


def test_register_numbers_versions_in_order_and_copies_the_model(trained_project) -> None:
    registry = _register(trained_project, 3)
    source = (trained_project / paths.MODEL).read_bytes()

    assert [v["version"] for v in registry.versions()] == ["v0001", "v0002", "v0003"]
    for version in ("v0001", "v0002", "v0003"):
        folder = trained_project / REGISTRY_DIR / version
        assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
        assert (folder / "model.skops").read_bytes() == source
    # Registering does not make anything production.
    assert registry.production() is None
    assert json.loads((trained_project / REGISTRY_FILE).read_text()) == registry.state()


def test_the_card_records_version_hash_metrics_and_decision(trained_project) -> None:
    registry = _register(trained_project, 2)
    card = registry.card("v0002")
    expected_hash = hashlib.sha256((trained_project / paths.MODEL).read_bytes()).hexdigest()

    assert card["version"] == "v0002"
    assert card["sha256"] == expected_hash
    assert card["metrics"] == CARD["metrics"]
    assert card["decision"] == CARD["decision"]
    assert card["registered_at"].endswith("+00:00")
    summary = registry.versions()[1]
    assert summary["version"] == "v0002"
    assert summary["sha256"] == expected_hash
    assert summary["metrics"] == CARD["metrics"]
    assert summary["decision"] == CARD["decision"]


def test_the_markdown_card_is_readable(trained_project) -> None:
    _register(trained_project, 1)
    text = (trained_project / REGISTRY_DIR / "v0001" / "MODEL_CARD.md").read_text()
    expected_hash = sha256(trained_project / paths.MODEL)

    assert text.startswith("# Model card: v0001\n")
    assert f"- **SHA-256:** `{expected_hash}`" in text
    assert "- **Model type:** random_forest" in text
    assert "- **Training rows:** 12,345 (1.230% fraud)" in text
    assert "- **Threshold:** 0.4321" in text
    assert "| average_precision | 0.6123 |" in text
    assert "| test_rows | 2370 |" in text
    assert "promote: promoted the challenger: +0.1000" in text
    assert f"- `data/raw/history.parquet`: `{'0' * 32}`" in text
    assert "amount, channel" in text


def test_update_card_changes_the_card_its_summary_and_its_markdown(trained_project) -> None:
    registry = _register(trained_project, 2)
    metrics = {"average_precision": 0.25}

    card = registry.update_card("v0001", metrics=metrics, role="first model")

    assert registry.card("v0001") == card
    assert card["metrics"] == metrics
    assert card["sha256"] == sha256(trained_project / paths.MODEL)
    assert registry.versions()[0]["metrics"] == metrics
    assert registry.versions()[1]["metrics"] == CARD["metrics"]
    markdown = (trained_project / REGISTRY_DIR / "v0001" / "MODEL_CARD.md").read_text()
    assert "| average_precision | 0.2500 |" in markdown
    assert "- **Role:** first model" in markdown


def test_promote_and_publish_put_a_version_in_production(trained_project) -> None:
    registry = _register(trained_project, 2)

    registry.promote("v0002", "better on average precision")
    target = registry.publish()

    state = registry.state()
    assert state["production"] == registry.production() == "v0002"
    assert state["pinned"] is False
    assert state["reason"] == "better on average precision"
    assert target == trained_project / PRODUCTION_DIR
    for name in FILES:
        published = (target / name).read_bytes()
        assert published == (trained_project / REGISTRY_DIR / "v0002" / name).read_bytes()


def test_rollback_makes_an_earlier_version_production_pinned_and_published(
    retrained_project,
) -> None:
    root = retrained_project
    registry = Registry(root)
    first = (root / REGISTRY_DIR / "v0001" / "model.skops").read_bytes()
    assert registry.production() == "v0002"
    assert (root / PRODUCTION_DIR / "model.skops").read_bytes() != first

    registry.rollback("v0001")

    assert registry.production() == "v0001"
    assert registry.state()["pinned"] is True
    assert registry.state()["reason"] == "rolled back to v0001 by hand"
    assert (root / PRODUCTION_DIR / "model.skops").read_bytes() == first
    assert json.loads((root / PRODUCTION_DIR / "model.json").read_text())["version"] == "v0001"

    registry.unpin()

    assert registry.state()["pinned"] is False
    assert registry.production() == "v0001"


def test_load_gives_the_pipeline_and_card_of_a_version(retrained_project) -> None:
    registry = Registry(retrained_project)

    pipeline, card = registry.load("v0002")

    assert card["version"] == "v0002"
    assert card["model_type"] == "logistic_regression"
    assert type(pipeline[-1]).__name__ == "LogisticRegression"
    test = pd.read_parquet(retrained_project / paths.TEST)
    features = FeatureSet(
        tuple(card["features"]["numeric"]), tuple(card["features"]["categorical"])
    )
    assert roc_auc_score(test["label"], fraud_scores(pipeline, test, features)) > 0.75


def _append_a_byte(root: Path) -> None:
    with open(root / REGISTRY_DIR / "v0001" / "model.skops", "ab") as stream:
        stream.write(b"\0")


def _swap_in_another_version(root: Path) -> None:
    other = (root / REGISTRY_DIR / "v0002" / "model.skops").read_bytes()
    (root / REGISTRY_DIR / "v0001" / "model.skops").write_bytes(other)


@pytest.mark.parametrize("tamper", [_append_a_byte, _swap_in_another_version])
def test_load_refuses_a_tampered_model_file(retrained_project, tamper) -> None:
    tamper(retrained_project)

    with pytest.raises(ModelIntegrityError, match="v0001/model.skops has SHA-256"):
        Registry(retrained_project).load("v0001")


@pytest.mark.parametrize(
    "call",
    [
        lambda registry: registry.card("v0009"),
        lambda registry: registry.load("v0009"),
        lambda registry: registry.promote("v0009", "by hand"),
        lambda registry: registry.rollback("v0009"),
        lambda registry: registry.update_card("v0009", role="none"),
    ],
    ids=["card", "load", "promote", "rollback", "update_card"],
)
def test_an_unknown_version_names_the_known_ones(retrained_project, call) -> None:
    registry = Registry(retrained_project)
    before = registry.state()

    with pytest.raises(RegistryError, match=r"no model version 'v0009' .* known: v0001, v0002$"):
        call(registry)

    assert registry.state() == before


@pytest.mark.parametrize("size", [0, 17, (1 << 20) * 3 + 5])
def test_file_md5_is_the_md5_of_the_bytes(tmp_path, size) -> None:
    content = np.random.default_rng(7).bytes(size)
    path = tmp_path / "data.bin"
    path.write_bytes(content)

    assert file_md5(path) == hashlib.md5(content).hexdigest()


def test_data_version_maps_each_input_to_its_md5(trained_project) -> None:
    inputs = [paths.HISTORY, paths.NEW_BATCH]

    version = data_version(trained_project, inputs)

    assert version == {
        "data/raw/history.parquet": file_md5(trained_project / paths.HISTORY),
        "data/raw/new_batch.parquet": file_md5(trained_project / paths.NEW_BATCH),
    }
    assert version["data/raw/history.parquet"] != version["data/raw/new_batch.parquet"]
