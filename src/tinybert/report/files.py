"""The files a run leaves, as the run report (collect.py) and the model cards (card.py) read them.

    data, why = read_json(model_dir / EVAL_FILE)       # (None, "not found") if absent
    log = read_metrics(stage_dir / METRICS_FILE)         # log.rows, log.bad (line numbers)
    main_metric("mnli", {"metric": None}, ["dev_matched"])  # -> "dev_matched/accuracy"

The one place in tinybert.report that names these files and knows their formats. The writers'
own constants (tinybert.evaluate.RESULTS_FILE, tinybert.benchmark.SPEED_FILE,
tinybert.export.onnx.REPORT_FILE) live in modules that import torch, so the names are spelled
again here (tests check they agree). A reader never raises over a missing or damaged file: it
returns None or {} (and, where the report names it, why). Importing this module does not import
torch; calling main_metric does (it asks the task registry, tinybert.data).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinybert.errors import UserError
from tinybert.export.runtime import EXPORT_SUBDIR

EVAL_FILE = "eval_results.json"  # `tinybert evaluate`, beside the model
EXPORT_FILE = "export.json"  # `tinybert export`, in the model's EXPORT_SUBDIR (onnx/)
SPEED_FILE = "speed.json"  # `tinybert benchmark`, beside the model
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"  # in a stage folder (the model's parent)
CONFIG_FILE = "config.yaml"  # in a stage folder: the full merged Config
CARD_FILE = "README.md"  # the model card, beside the model
INIT_FILE = "init.json"  # in a stage folder: how its student was initialised (student.init)
# Keys of eval_results.json / eval rows that count things rather than score the model (MNLI
# prefixes them too: "dev_matched/n_examples").
COUNT_KEYS = ("n_examples", "predicted_classes", "skipped_rows")
# eval_results.json's trivial baseline of the dev set (the metrics' keys) and the verdict on
# the main metric (tinybert.evaluate.BASELINE_KEY / VERDICT_KEY, spelled again: see above).
BASELINE_KEY = "baseline"
VERDICT_KEY = "verdict"
NOT_FOUND = "not found"  # read_json's reason for an absent file
RESOLVED_PRECISIONS = ("fp32", "bf16", "fp16")  # what `precision: auto` becomes, or was asked


def export_json(model_dir: Path) -> Path:
    """Where `tinybert export --model model_dir` writes its export.json."""
    return model_dir / EXPORT_SUBDIR / EXPORT_FILE


# ---------------------------------------------------------------------------------------------
# Reading files


def read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the JSON object in `path`, "") or (None, why not): NOT_FOUND, "is not readable JSON
    (...)" or "is not a JSON object"."""
    if not path.is_file():
        return None, NOT_FOUND
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        return None, f"is not readable JSON ({e})"
    if not isinstance(data, dict):
        return None, "is not a JSON object"
    return data, ""


def json_or_empty(path: Path) -> dict[str, Any]:
    """read_json's object, or {} whatever went wrong (a card never fails over a side file)."""
    return read_json(path)[0] or {}


def student_start(stage_dir: Path) -> str:
    """How a distillation stage's student was initialised, student.init resolved ("select from
    runs/x/teacher/best, layers [2, 4, 6] (student.init=auto)"); "" if not recorded."""
    text = json_or_empty(stage_dir / INIT_FILE).get("text")
    return text if isinstance(text, str) else ""


def teacher_attention(stage_dir: Path) -> str:
    """What a distillation stage's student learned of its teacher's attention ("RoBERTa
    teacher; the student learns its pre-softmax attention scores (MSE)"); "" if not recorded."""
    teacher = json_or_empty(stage_dir / INIT_FILE).get("teacher")
    text = teacher.get("text") if isinstance(teacher, dict) else None
    return text if isinstance(text, str) else ""


def read_config(stage_dir: Path) -> dict[str, Any]:
    """A stage folder's config.yaml (the full Config); {} if missing, garbled or no mapping."""
    try:
        data = yaml.safe_load((stage_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class MetricRows:
    """A metrics.jsonl as read: its JSON object rows, and the lines that are not one."""

    numbered: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line from 1, row)
    bad: list[int] = field(default_factory=list)  # non-blank lines that are no JSON object
    error: str = ""  # why the file could not be read ("" if it was)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for _, row in self.numbered]


def read_metrics(path: Path) -> MetricRows:
    """A stage's metrics.jsonl. A line that is not a JSON object (the torn last line of a
    killed run) is skipped and counted in `bad`; an unreadable file gives only `error`."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        return MetricRows(error=e.strerror or str(e))
    log = MetricRows()
    for number, line in enumerate(lines, 1):
        row = _json_line(line)
        if row is not None:
            log.numbered.append((number, row))
        elif line.strip():
            log.bad.append(number)
    return log


def recorded_precision(rows: Iterable[dict[str, Any]]) -> str | None:
    """The precision a stage trained in, as resolved: its metrics.jsonl rows carry it (training
    rows and the done row); None for a stage logged before they did, or not logged yet."""
    found = None
    for row in rows:
        value = row.get("precision")  # top level: an eval row's "precision" is inside "eval"
        if value in RESOLVED_PRECISIONS:
            found = value
    return found


def precision_shown(resolved: str | None, setting: Any) -> str:
    """A stage's precision for people: "bf16 (auto)" where auto chose bf16, "fp32" where fp32
    was asked for, the setting alone where the resolved value was not recorded."""
    if resolved is None:
        return str(setting) if setting is not None else "?"
    return f"{resolved} (auto)" if setting == "auto" else resolved


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def count_parameters(path: Path) -> int | None:
    """Number of weights in a .safetensors file, from its JSON header alone (no weights read):
    the header's length (u64, little-endian), then {"name": {"shape": [...]}, "__metadata__"}.
    None if the file is missing or is not safetensors."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if not 0 < length <= path.stat().st_size - 8:  # not a header: do not read that much
                return None
            header = json.loads(f.read(length))
        shapes = [info["shape"] for name, info in header.items() if name != "__metadata__"]
        return sum(math.prod(int(d) for d in shape) for shape in shapes)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return None


# ---------------------------------------------------------------------------------------------
# Metrics


def number(value: Any, finite: bool = True) -> float | None:
    """An int or float (not a bool) as float, else None; NaN and infinities too are None unless
    finite=False."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if not finite or math.isfinite(value) else None


def numbers(data: dict[str, Any], finite: bool = True) -> dict[str, float]:
    """The entries of a JSON object that are numbers (see `number`), as floats in file order."""
    found = {str(key): number(value, finite) for key, value in data.items()}
    return {key: value for key, value in found.items() if value is not None}


def metric_values(data: dict[str, Any], finite: bool = True) -> dict[str, float]:
    """The metrics of an eval dict: its numbers that are not counts (n_examples ...). A card
    keeps a NaN score (finite=False) to show it; a chart cannot draw one."""
    return {
        k: v for k, v in numbers(data, finite).items() if k.rpartition("/")[2] not in COUNT_KEYS
    }


def dev_splits(metrics: Iterable[str]) -> list[str]:
    """The dev splits an eval dict (its keys) holds, from its "<split>/n_examples"-style keys:
    MNLI's ["dev_matched", "dev_mismatched"]; [] for a one-split task (keys are not prefixed)."""
    found: list[str] = []
    for key in metrics:
        prefix, _, last = key.rpartition("/")
        if prefix and last in COUNT_KEYS and prefix not in found:
            found.append(prefix)
    return found


def task_metric(task: str | None, section: dict[str, Any]) -> str | None:
    """The metric that picks best/, unprefixed: config.yaml's task.metric (`section` is its task
    section), else the task registry's main metric of `task` (with the section's labels and
    regression, which the generic jsonl/csv tasks need). None for an unknown task."""
    named = section.get("metric")
    if isinstance(named, str) and named:
        return named
    if not task:
        return None
    from tinybert.data.tasks import get_task  # here: tinybert.data imports torch

    labels = section.get("labels")
    regression = section.get("regression") is True
    try:
        spec = get_task(task, labels if isinstance(labels, list) else None, regression)
    except UserError:  # an unknown name, or jsonl/csv without labels: let the caller guess
        return None
    return spec.main_metric


def main_metric(
    task: str | None, section: dict[str, Any], splits: Sequence[str], guesses: Iterable[Any] = ()
) -> str | None:
    """The eval key that picks best/: task_metric, prefixed by the first dev split when there
    are several (`splits`, from dev_splits: MNLI -> "dev_matched/accuracy"). For an unknown task
    the first non-empty string of `guesses` (the caller's fallbacks, best first), else None."""
    name = task_metric(task, section)
    if name is None:
        return next((g for g in guesses if isinstance(g, str) and g), None)
    return f"{splits[0]}/{name}" if splits else name


# ---------------------------------------------------------------------------------------------
# The trivial baseline (tinybert.data.baseline writes it into eval_results.json)


def baseline_values(results: dict[str, Any]) -> dict[str, float]:
    """eval_results.json's baseline metrics, keyed as its metrics; {} if it has none (a file
    from before baselines)."""
    found = results.get(BASELINE_KEY)
    return numbers(found) if isinstance(found, dict) else {}


def verdict_of(results: dict[str, Any]) -> dict[str, Any]:
    """eval_results.json's verdict on the main metric ({"metric", "value", "baseline",
    "margin", "trivial", "baseline_is", "single_class"}); {} if it has none."""
    found = results.get(VERDICT_KEY)
    return found if isinstance(found, dict) else {}


def is_trivial(verdict: dict[str, Any]) -> bool:
    """The verdict says the model is no better than the baseline."""
    return verdict.get("trivial") is True


def kept_over_baseline(teacher: float, student: float, baseline: float) -> float | None:
    """The share of the teacher's gain over the trivial baseline the student keeps:
    (student - baseline) / (teacher - baseline); 1.0 = all of it, 0 or less = none. None when
    the teacher gains nothing over the baseline (then there is nothing to keep)."""
    gain = teacher - baseline
    return (student - baseline) / gain if gain > 0 else None


def score_ratio(teacher: float, student: float) -> float | None:
    """The plain student / teacher ratio of a score; None unless the teacher's is positive."""
    return student / teacher if teacher > 0 else None


def trivial_sentence(role: str, verdict: dict[str, Any]) -> str:
    """One sentence calling a trivial model what it is, e.g. "the student is no better than
    the trivial baseline: dev accuracy 0.5000 against 0.5000 for always '1' (the majority
    class), and must beat it by at least 0.01; it predicts one class for every dev row"."""
    value, base = number(verdict.get("value"), finite=False), number(verdict.get("baseline"))
    metric = verdict.get("metric") or "main metric"
    scores = ""
    if value is not None and base is not None:
        what = f" for {verdict['baseline_is']}" if verdict.get("baseline_is") else ""
        scores = f": dev {metric} {value:.4f} against {base:.4f}{what}"
        margin = number(verdict.get("margin"))
        scores += f", and must beat it by at least {margin:g}" if margin else ""
    single = "; it predicts one class for every dev row" if verdict.get("single_class") else ""
    return f"the {role} is no better than the trivial baseline{scores}{single}"
