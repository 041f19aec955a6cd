"""Run one pipeline stage by calling the package directly, without papermill or a notebook.

Used by run.py to measure papermill's overhead per stage: same work, same params.yaml.
"""

from __future__ import annotations

import sys

from fraudops import (
    data,
    evaluation,
    features,
    model,
    monitoring,
    paths,
    retraining,
    scoring,
    simulate,
)


def run_stage(stage: str) -> None:
    """Do the work of ``stage`` with the settings in params.yaml."""
    root = paths.project_root()
    params = paths.load_params(root)
    if stage == "data":
        settings = dict(params["data"])
        simulation = simulate.config_from({"seed": params["seed"], **params["simulator"]})
        data.build_raw_data(root, simulation=simulation, progress=False, **settings)
    elif stage == "preprocess":
        split = params["split"]
        features.build_datasets(root, seed=params["seed"], **params["features"], **split)
    elif stage == "train":
        chosen = params["model"]["type"]
        hyperparameters = dict(params["model"][chosen])
        model.train_model(
            root, model_type=chosen, hyperparameters=hyperparameters, seed=params["seed"]
        )
    elif stage == "retrain":
        chosen = params["model"]["type"]
        settings = dict(params["retrain"])
        rule = retraining.PromotionRule(
            settings.pop("metric"),
            settings.pop("min_improvement"),
            settings.pop("max_recall_drop"),
        )
        retraining.retrain(
            root,
            rule=rule,
            model_type=chosen,
            hyperparameters=dict(params["model"][chosen]),
            evaluation_settings={
                key: value
                for key, value in params["evaluate"].items()
                if not key.startswith("prequential")
            },
            card_windows=params["features"]["card_windows"],
            seed=params["seed"],
            audit_path=params["audit_log"],
            **settings,
        )
    elif stage == "evaluate":
        settings = dict(params["evaluate"])
        folds = settings.pop("prequential_folds")
        test_days = settings.pop("prequential_test_days")
        evaluation.evaluate_model(root, seed=params["seed"], **settings)
        evaluation.prequential_evaluation(
            root,
            folds=folds,
            test_days=test_days,
            train_days=params["split"]["train_days"],
            delay_days=params["split"]["delay_days"],
            top_k=settings["top_k"],
            progress=False,
        )
    elif stage == "monitor":
        monitoring.monitor(
            root,
            thresholds=monitoring.DriftThresholds(**params["monitor"]),
            card_windows=params["features"]["card_windows"],
            seed=params["seed"],
        )
    elif stage == "score":
        alerts = params["alerts"]
        scoring.score_and_alert(
            root,
            rules_params=params["rules"],
            watchlist_path=params["score"]["watchlist"],
            outbox=alerts["outbox"],
            digest_cap=alerts["digest_cap"],
            immediate_severity=alerts["immediate_severity"],
            audit_path=params["audit_log"],
            card_windows=params["features"]["card_windows"],
            chunk_rows=params["score"]["chunk_rows"],
            high_score=params["score"]["high_score"],
            progress=False,
        )
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    run_stage(sys.argv[1])
