"""Tests of the project root, the stage inputs and the on/off settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudops import paths


def test_project_root_from_the_root_and_from_a_nested_folder(new_project) -> None:
    root = new_project()
    nested = root / "notebooks" / "drafts" / "old"
    nested.mkdir(parents=True)
    assert paths.project_root(root) == root.resolve()
    assert paths.project_root(nested) == root.resolve()


def test_project_root_defaults_to_the_working_folder(new_project, monkeypatch) -> None:
    root = new_project()
    (root / "notebooks").mkdir()
    monkeypatch.chdir(root / "notebooks")
    assert paths.project_root() == root.resolve()


@pytest.mark.parametrize("markers", [(), ("dvc.yaml",), ("params.yaml",)])
def test_project_root_outside_a_project_says_what_it_looked_for(tmp_path, markers) -> None:
    folder = tmp_path / "elsewhere" / "deeper"
    folder.mkdir(parents=True)
    for marker in markers:
        (tmp_path / "elsewhere" / marker).write_text("")
    with pytest.raises(FileNotFoundError, match="no fraudops project") as caught:
        paths.project_root(folder)
    assert "dvc.yaml and params.yaml" in str(caught.value)
    assert str(folder) in str(caught.value)


def test_load_params_reads_the_roots_params(new_project) -> None:
    root = new_project()
    (root / "params.yaml").write_text("seed: 7\nsplit:\n  delay_days: 3\n")
    assert paths.load_params(root) == {"seed": 7, "split": {"delay_days": 3}}


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        (paths.HISTORY, "data"),
        (paths.SCORE_LABELS, "data"),
        (paths.TRAIN, "preprocess"),
        (paths.FEATURES, "preprocess"),
        (paths.MODEL, "train"),
        (paths.MODEL_CARD, "train"),
        (paths.THRESHOLD, "evaluate"),
    ],
)
def test_require_inputs_names_the_stage_that_makes_a_missing_file(tmp_path, path, stage) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        paths.require_inputs(tmp_path, path)
    assert str(caught.value) == (
        f"{path} is missing; the '{stage}' stage makes it: run `dvc repro {stage}` "
        f"or open and run its notebook first"
    )


def test_require_inputs_lists_every_missing_file_and_passes_present_ones(tmp_path) -> None:
    (tmp_path / paths.TRAIN).parent.mkdir(parents=True)
    (tmp_path / paths.TRAIN).write_text("")
    paths.require_inputs(tmp_path, paths.TRAIN)

    with pytest.raises(FileNotFoundError) as caught:
        paths.require_inputs(tmp_path, paths.TRAIN, paths.MODEL, Path("data/extra.csv"))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("models/model.skops is missing; the 'train' stage")
    assert lines[1].startswith("data/extra.csv is missing; the 'an earlier' stage")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        (" on ", True),
        ("OFF", False),
        ("yes", True),
        ("no", False),
        ("1", True),
        (0, False),
    ],
)
def test_as_flag(value, expected) -> None:
    assert paths.as_flag(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", None, 2])
def test_as_flag_refuses_other_values(value) -> None:
    with pytest.raises(ValueError, match="expected an on/off setting"):
        paths.as_flag(value)


def test_every_stage_input_has_a_maker() -> None:
    inputs = [paths.HISTORY, paths.NEW_BATCH, paths.TRAIN, paths.TEST, paths.MODEL]
    assert all(path in paths.MADE_BY for path in inputs)
    assert set(paths.MADE_BY.values()) == {"data", "preprocess", "train", "evaluate"}
