"""`tinybert run`'s time estimate (pipeline/estimate.py): phase 1 counts the teacher once per row
when its outputs fit the teacher cache, at every epoch when they do not."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import write_sst2, write_tiny_bert
from tinybert.config import load_config
from tinybert.pipeline.estimate import stage_costs
from tinybert.pipeline.stages import Wiring


def _task_distill_cost(tmp_path: Path, *overrides: str) -> float:
    data, teacher = write_sst2(tmp_path / "data"), write_tiny_bert(tmp_path / "teacher", 2)
    cfg = load_config(
        [],
        [
            f"task.data_dir={data}",
            f"teacher={teacher}",
            f"output_dir={tmp_path / 'run'}",
            "run.stages=[task-distill]",
            "distill.phases=[intermediate]",
            "intermediate.epochs=10",
            *overrides,
        ],
    )
    stage = SimpleNamespace(name="task-distill")
    cost = stage_costs([stage], cfg, Wiring.of(cfg))["task-distill"]  # type: ignore[list-item]
    assert cost is not None
    return cost


def test_phase1_estimate_counts_the_cached_teacher_once(tmp_path: Path) -> None:
    cached = _task_distill_cost(tmp_path / "a")
    live = _task_distill_cost(tmp_path / "b", "intermediate.teacher_cache_gb=0")
    tiny = _task_distill_cost(tmp_path / "c", "intermediate.teacher_cache_gb=1e-9")  # too small
    assert cached < live
    assert tiny == live
    # rows x tokens x (10 epochs x 6 x student + teacher passes x 2 x teacher), so the two
    # differ by 9 teacher passes over the training rows (the estimate counts train.tsv's 49
    # lines, header included; 128 x 0.4 tokens each) through the tiny teacher's matrices
    teacher = 2 * (4 * 32 * 32 + 2 * 32 * 37)
    assert live - cached == pytest.approx(49 * 128 * 0.4 * 9 * 2 * teacher)
