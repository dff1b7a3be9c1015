"""Is a model `tinybert run` made better than the trivial baseline of the dev set?

    found = judge_model(cfg, "teacher", "runs/demo/teacher/best")  # None: nothing to judge by
    found.trivial, found.line()

The verdict (tinybert.data.baseline.judge, on the main dev metric) is eval_results.json's when
`evaluate` wrote one after the model was saved (every dev row counted); otherwise it is made from
the best dev evaluation in the model's stage folder (metrics.jsonl, the one that picked best/)
against the baseline of the same dev rows, read from the task's dev labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinybert.config import Config
from tinybert.data.baseline import judge, split_baselines
from tinybert.data.task_data import load_task_data
from tinybert.report.files import (
    EVAL_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    is_trivial,
    json_or_empty,
    number,
    numbers,
    read_metrics,
    trivial_sentence,
    verdict_of,
)


@dataclass(frozen=True)
class Judgement:
    """One model's verdict and where its score comes from."""

    role: str  # "teacher" or "student"
    model: str
    verdict: dict[str, Any]  # as eval_results.json's "verdict"
    source: str  # "tinybert evaluate" or "<stage>/metrics.jsonl, step N"

    @property
    def trivial(self) -> bool:
        return is_trivial(self.verdict)

    def record(self) -> dict[str, Any]:
        """What run.json keeps under "verdicts"."""
        return {**self.verdict, "model": self.model, "source": self.source}

    def line(self) -> str:
        """A line for the console: the failure, loudly, or how far above the baseline."""
        if self.trivial:
            return f"!!! FAILED: {trivial_sentence(self.role, self.verdict)} ({self.source})"
        value, base = number(self.verdict.get("value")), number(self.verdict.get("baseline"))
        if value is None or base is None:
            return f"{self.role}: better than the trivial baseline ({self.source})"
        return (
            f"{self.role}: dev {self.verdict.get('metric')} {value:.4f}, {value - base:+.4f} over "
            f"the trivial baseline {base:.4f} ({self.verdict.get('baseline_is')}; {self.source})"
        )


def judge_model(cfg: Config, role: str, model_dir: str | Path) -> Judgement | None:
    """The verdict on `model_dir`; None when neither an eval_results.json newer than its
    weights nor its stage's metrics.jsonl has a dev score of it."""
    model = Path(model_dir)
    verdict = verdict_of(_fresh_results(model))
    if verdict:
        return Judgement(role, str(model), verdict, "tinybert evaluate")
    return _from_training(cfg, role, model)


def _fresh_results(model: Path) -> dict[str, Any]:
    """eval_results.json, unless the weights were saved after it (then it scored others)."""
    results, weights = model / EVAL_FILE, model / WEIGHTS_FILE
    if not results.is_file():
        return {}
    if weights.is_file() and weights.stat().st_mtime > results.stat().st_mtime:
        return {}
    return json_or_empty(results)


def _from_training(cfg: Config, role: str, model: Path) -> Judgement | None:
    """The verdict on the best dev evaluation of the model's stage, against the baseline of
    the dev rows that evaluation used (task.max_eval_examples included)."""
    log = model.parent / METRICS_FILE
    best = _best_eval(log)
    if best is None:
        return None
    step, metrics = best
    data = load_task_data(cfg.task, model, cfg.seed, train=False, quiet=True)
    key = data.metric_key(cfg.task.metric) if cfg.task.metric else data.main_metric
    if key not in metrics:
        return None
    verdict = judge(data.task, data.dev, key, metrics, split_baselines(data.task, data.dev))
    return Judgement(role, str(model), verdict, f"{log}, step {step}")


def _best_eval(log: Path) -> tuple[int, dict[str, float]] | None:
    """(best step, its dev metrics) from a finished stage's metrics.jsonl, else None."""
    rows = read_metrics(log).rows
    done = next((r for r in reversed(rows) if r.get("done")), None)
    if done is None or not isinstance(done.get("best_step"), int):
        return None
    step = done["best_step"]
    evals = [r["eval"] for r in rows if r.get("step") == step and isinstance(r.get("eval"), dict)]
    return (step, numbers(evals[-1], finite=False)) if evals else None
