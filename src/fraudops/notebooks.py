"""Keeping the pipeline notebooks' checked outputs in step with what the pipeline computes.

Cells marked ``# NBVAL_CHECK_OUTPUT`` print key results; nbval reruns the notebooks in the
tests and fails when those outputs change. After an intended change of results, copy the new
outputs from the executed copies under ``reports/`` back into ``notebooks/`` with
``fraudops refresh-notebooks``; every other cell is stored without outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat

from fraudops.io import write_text_atomic

logger = logging.getLogger(__name__)

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell) -> bool:
    """Whether nbval compares this cell's output."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def refresh_outputs(source: Path, executed: Path) -> int:
    """Copy the checked cells' outputs from ``executed`` into ``source``; clear all others.

    Cells are matched by their code, since the executed copy has papermill's injected
    parameters cell in addition. Returns the number of checked cells refreshed.
    """
    notebook = nbformat.read(source, as_version=4)
    ran = nbformat.read(executed, as_version=4)
    runs = {cell.source: cell for cell in ran.cells if is_checked(cell)}
    refreshed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        if is_checked(cell):
            if cell.source not in runs:
                raise ValueError(f"{executed} has no run of a checked cell of {source}")
            # nbval ignores a stored output whose cell has no execution count.
            cell.execution_count = runs[cell.source].execution_count
            cell.outputs = [_without_metadata(output) for output in runs[cell.source].outputs]
            refreshed += 1
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    write_text_atomic(nbformat.writes(notebook) + "\n", source)
    logger.info("refreshed %d checked cells of %s from %s", refreshed, source, executed)
    return refreshed


def _without_metadata(output):
    return nbformat.from_dict(dict(output))


def refresh_all(root: Path, executed_dir: Path | None = None) -> dict[str, int]:
    """Refresh every pipeline notebook from its executed copy in ``executed_dir``.

    Use the reports of a run from scratch (``make notebooks`` does one in a scratch copy):
    the tests run the notebooks from scratch too, with an empty model registry.
    """
    executed_dir = Path(executed_dir or root / "reports")
    counts = {}
    for source in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        executed = executed_dir / source.name
        if not executed.exists():
            raise FileNotFoundError(f"{executed} is missing: run `dvc repro` first")
        counts[source.name] = refresh_outputs(source, executed)
    return counts
