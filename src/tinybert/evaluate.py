"""`tinybert evaluate`: score a saved model (PyTorch) or an export (ONNX Runtime) on the task's
dev split(s), with the same data, batching and metrics as evaluation during training.

    metrics = run_evaluate(cfg, "runs/sst2/student/prediction/best")
    metrics = run_evaluate(cfg, "runs/sst2/student/prediction/best", precision="int8")  # ONNX

Beside the model's metrics, the results hold the dev set's trivial baseline (tinybert.data.baseline)
under "baseline" (the same keys as the metrics) and the verdict on the main metric under "verdict"
({"metric", "value", "baseline", "margin", "trivial", "baseline_is", "single_class"}).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from tinybert.config import Config
from tinybert.data.base import split_source
from tinybert.data.baseline import judge, split_baselines
from tinybert.data.task_data import check_labels, check_length, load_task_data, task_spec
from tinybert.errors import UserError
from tinybert.export.backend import check_precision, resolve_backend, serving_precision
from tinybert.export.runtime import OnnxLogits, find_onnx
from tinybert.model import load_any_model, load_model_config
from tinybert.paths import check_output_file, write_atomic
from tinybert.train.distributed import resolve_device
from tinybert.train.inference import LogitsFn, evaluate_splits
from tinybert.train.precision import autocast

RESULTS_FILE = "eval_results.json"
BASELINE_KEY = "baseline"  # the dev set's trivial baseline, keyed as the metrics
VERDICT_KEY = "verdict"  # the main metric against the baseline (data.baseline.judge)
# Bumped when the results gain fields, so `tinybert run` evaluates a model again (2: baseline).
RESULTS_FORMAT = 2


def run_evaluate(
    cfg: Config,
    model_dir: str,
    backend: str = "auto",
    precision: str = "auto",
    onnx_file: str | None = None,
) -> dict:
    """Every dev split's metrics, every example counted, with what was run and how they compare
    to the trivial baseline: {"model", "task", "backend", ["onnx", "precision"], metrics...,
    "skipped_rows", "baseline": {metric: value}, "verdict": {...}} (see the module's doc)."""
    backend = resolve_backend(model_dir, backend, onnx_file)
    check_precision(backend, precision)
    task = task_spec(cfg.task)
    info: dict = {"model": model_dir, "task": task.name, "backend": backend}
    if backend == "onnx":
        device = torch.device("cpu")
        precision = serving_precision(backend, precision, device)
        path = find_onnx(model_dir, precision, onnx_file)
        config = load_model_config(model_dir)
        model: torch.nn.Module | LogitsFn = OnnxLogits(path)
        info.update(onnx=str(path), precision=precision)
    else:
        device = resolve_device(cfg.device)
        torch_model, report = load_any_model(model_dir, head=task.head)
        if report.initialised:
            raise UserError(
                f"{model_dir} has no trained task head ({', '.join(report.initialised)})"
            )
        config, model = torch_model.config, torch_model.to(device)
        precision = serving_precision(backend, precision, device)  # auto: bf16 where fast
        info.update(precision=precision)
    check_labels(config, task, model_dir)
    check_length(cfg.task.max_seq_length, config.max_position_embeddings)
    data = load_task_data(cfg.task, model_dir, cfg.seed, False, config.vocab_size, quiet=True)
    batch = cfg.finetune.eval_batch_size
    with torch.no_grad(), autocast(device, precision if backend == "torch" else "fp32"):
        metrics = evaluate_splits(model, data.dev, task, batch, device, data.pad_id)
    key = data.metric_key(cfg.task.metric) if cfg.task.metric else data.main_metric
    baseline = split_baselines(task, data.dev)
    return {
        **info,
        **metrics,
        "skipped_rows": sum(data.skipped.values()),
        BASELINE_KEY: baseline,
        VERDICT_KEY: judge(task, data.dev, key, metrics, baseline),
    }


def default_output(model_dir: str | Path) -> Path:
    return Path(model_dir) / RESULTS_FILE


def check_output(
    cfg: Config,
    output: Path,
    model_dir: str,
    onnx_file: str | None = None,
    configs: Sequence[str] = (),
) -> None:
    """Before any work: `output` must be writable and overwrite nothing evaluate reads: the
    config files, the ONNX file, the task's split files, and no file inside a model folder (the
    evaluated one, or one the config names) unless it is the default, <model>/eval_results.json."""
    task = task_spec(cfg.task)
    data_dir = Path(cfg.task.data_dir)
    splits = [data_dir / f for f in (task.train_split, *task.dev_splits.values())]
    inputs: list[str | Path | None] = [
        *configs,
        onnx_file,
        cfg.task.train_file,
        *(split_source(path)[0] for path in splits if cfg.task.data_dir),
    ]
    if output.resolve() != default_output(model_dir).resolve():
        inputs += [model_dir, cfg.model, cfg.teacher, cfg.student.path, cfg.run.general_teacher]
    check_output_file(output, "--output", inputs)


def write_results(results: dict, output: str | Path) -> str:
    """The results as indented JSON, written to `output` (atomically: a reader never sees half a
    file); returns the text."""
    text = json.dumps(results, indent=2)
    write_atomic(Path(output), text + "\n")
    return text
