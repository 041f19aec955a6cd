"""The pipeline notebooks: their structure, their parameters, and nbval over all of them."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import nbformat
import pytest
import yaml
from scratch import ROOT, copy_project

from fraudops.notebooks import is_checked

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def read(path):
    return nbformat.read(path, as_version=4)


def stage_of(path) -> dict:
    return next(stage for stage in STAGES.values() if f"notebooks/{path.name}" in stage["cmd"])


def notebook_defaults(path) -> dict:
    """The values assigned in the notebook's parameters cell."""
    (cell,) = [c for c in read(path).cells if "parameters" in c.metadata.get("tags", [])]
    tree = ast.parse(cell.source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


def passed_by_dvc(path) -> dict:
    """The values dvc.yaml passes with -p, looked up in params.yaml."""
    passed = {}
    for name, reference in re.findall(r"-p (\w+) '?\$\{([\w.]+)\}'?", stage_of(path)["cmd"]):
        node = PARAMS
        for key in reference.split("."):
            node = node[key]
        passed[name] = node
    return passed


def test_every_stage_runs_one_of_the_notebooks():
    assert len(NOTEBOOKS) == len(STAGES) >= 4
    for path in NOTEBOOKS:
        stage = stage_of(path)
        assert f"notebooks/{path.name}" in stage["deps"]
        assert f"reports/{path.name}" in str(stage["outs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_matches_what_dvc_passes(path):
    defaults, passed = notebook_defaults(path), passed_by_dvc(path)
    assert set(defaults) == set(passed), "every parameter comes from params.yaml, and only those"
    assert defaults == passed, "the notebook's defaults are params.yaml's values"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_badge_introduction_and_colab_setup(path):
    cells = read(path).cells
    intro = cells[0]
    assert intro.cell_type == "markdown"
    assert (
        f"colab.research.google.com/github/fraudops/fraudops/blob/main/notebooks/{path.name}"
        in (intro.source)
    )
    assert re.search(r"^# \d\. ", intro.source, re.MULTILINE), "a numbered title"
    assert "**Reads:**" in intro.source and "**Writes:**" in intro.source
    assert '"google.colab" in sys.modules' in cells[1].source
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and cells.index(tagged[0]) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_only_checked_cells_keep_outputs(path):
    cells = [c for c in read(path).cells if c.cell_type == "code"]
    checked = [c for c in cells if is_checked(c)]
    assert checked, "each notebook prints its key results in a cell nbval checks"
    assert all(c.outputs for c in checked), "run `fraudops refresh-notebooks` after dvc repro"
    assert all(c.execution_count for c in checked), "nbval skips outputs of unrun cells"
    assert not any(c.outputs for c in cells if not is_checked(c))


def test_notebooks_pass_nbval_in_a_scratch_copy(tmp_path):
    """Run every notebook top to bottom with its defaults; checked outputs must not change."""
    project = copy_project(tmp_path / "project", with_git=False)
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q"]
        + ["-p", "no:cacheprovider", "-o", "addopts="]
        + [f"notebooks/{path.name}" for path in NOTEBOOKS],
        cwd=project,
        capture_output=True,
        text=True,
        env=environment,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert (project / "reports" / "metrics.json").exists()
    assert not (ROOT / "notebooks" / ".ipynb_checkpoints").exists()
