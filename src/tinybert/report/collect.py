"""Read a run directory into plain dataclasses, from its files alone (no model is run).

    run = collect_run("runs/demo")
    run.teacher.metrics["accuracy"], run.student.params, run.series["prediction"].evals
    run.baseline["accuracy"], run.student.verdict["trivial"]  # the dev set's trivial baseline
    run.missing  # ["student: runs/demo/student/prediction/best/eval_results.json not found (...)"]

Where a file is absent or unreadable the matching field stays empty and `missing` gets one
sentence naming the file and the command that makes it. The readers, file names and the main
metric are shared with the model cards (files.py). Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinybert.errors import UserError
from tinybert.export.runtime import EXPORT_SUBDIR, FP32_FILE, INT8_FILE
from tinybert.report.files import (
    CONFIG_FILE,
    EVAL_FILE,
    METRICS_FILE,
    NOT_FOUND,
    SPEED_FILE,
    WEIGHTS_FILE,
    baseline_values,
    count_parameters,
    dev_splits,
    export_json,
    json_or_empty,
    main_metric,
    metric_values,
    number,
    numbers,
    precision_shown,
    read_config,
    read_json,
    read_metrics,
    recorded_precision,
    student_start,
    teacher_attention,
    verdict_of,
)

RUN_FILE = "run.json"
# Where each model lives when run.json does not say (or names a path that is gone).
MODEL_DIRS = {"teacher": "teacher/best", "student": "student/prediction/best"}
# The training stages: key -> (folder in RUN_DIR, label, the `tinybert run` stage that makes it).
SERIES = {
    "general": ("general", "general distillation", "general-distill"),
    "teacher": ("teacher", "finetune (teacher)", "finetune"),
    "intermediate": ("student/intermediate", "task distillation phase 1", "task-distill"),
    "prediction": ("student/prediction", "task distillation phase 2", "task-distill"),
}
# The config section of each stage's TrainConfig (its precision setting).
SECTIONS = {
    "general": "general",
    "teacher": "finetune",
    "intermediate": "intermediate",
    "prediction": "prediction",
}
# Whose saved config.yaml to read first: the student's holds distill.phases and its teacher.
CONFIG_ORDER = ("prediction", "intermediate", "teacher", "general")
STAGE_COMMANDS = {
    "general-distill": "general-distill",
    "finetune": "finetune",
    "task-distill": "task-distill",
}


@dataclass
class Speed:
    """speed.json: sequences/s by (backend, precision, batch size), and where it was measured."""

    machine: str = ""
    threads: int | None = None
    sequences: int | None = None
    mean_tokens: float | None = None
    max_seq_length: int | None = None
    measured_at: str = ""
    results: dict[tuple[str, str, int], float] = field(default_factory=dict)


@dataclass
class Model:
    """One saved model (the teacher or the student) and what later stages wrote beside it."""

    role: str  # "teacher" or "student"
    path: Path  # the model folder, as the reader can open it
    params: int | None = None  # number of weights, from model.safetensors' header
    sizes: dict[str, int] = field(default_factory=dict)  # "safetensors"/"onnx fp32"/"onnx int8"
    metrics: dict[str, float] = field(default_factory=dict)  # eval_results.json, in file order
    baseline: dict[str, float] = field(default_factory=dict)  # its dev set's trivial baseline
    verdict: dict[str, Any] = field(default_factory=dict)  # main metric vs baseline ({} if none)
    splits: list[str] = field(default_factory=list)  # its dev splits where several (MNLI)
    export_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # backend -> dev
    export_main: str | None = None  # export.json "main_metric"
    speed: Speed | None = None
    task: str | None = None  # eval_results.json "task"


@dataclass
class Series:
    """One training stage's metrics.jsonl: training rows, dev evaluations and the end row."""

    key: str  # "general", "teacher", "intermediate" or "prediction"
    label: str
    path: Path
    train: list[dict[str, float]] = field(default_factory=list)  # step, loss, att_loss, ...
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, metrics)
    best_step: int | None = None  # from the "done" row, when there is one
    best_metric: float | None = None
    precision: str = ""  # as trained, for people ("bf16 (auto)"); "" if its rows do not say


@dataclass
class Stage:
    """One stage of run.json: how it ended, how long it took, and how to run it again."""

    name: str
    status: str
    seconds: float | None
    command: str


@dataclass
class RunData:
    """Everything the report shows, read from RUN_DIR."""

    run_dir: Path
    task: str | None
    main_metric: str | None  # eval key that picks best/, e.g. "accuracy", "dev_matched/accuracy"
    teacher: Model
    student: Model
    series: dict[str, Series]  # only stages with a readable metrics.jsonl
    stages: list[Stage]  # empty without run.json
    missing: list[str]
    notes: list[str]  # how paths were resolved (not problems)
    # How the student of "general-distill" / "task-distill" started: its stage's init.json,
    # student.init as resolved ("select from runs/x/teacher/best, layers [2, 4, 6]")
    starts: dict[str, str] = field(default_factory=dict)
    # What each distillation's student learned of its teacher's attention, by stage (init.json)
    attention: dict[str, str] = field(default_factory=dict)

    @property
    def baseline(self) -> dict[str, float]:
        """The dev set's trivial baseline per metric key: the student's eval_results.json's,
        filled in from the teacher's (both score the same dev rows in a run)."""
        return {**self.teacher.baseline, **self.student.baseline}


# ---------------------------------------------------------------------------------------------
# reading files


class _Reader:
    """Reads JSON files, turning a missing or garbled one into a sentence in `missing`."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.missing: list[str] = []
        self.notes: list[str] = []
        # the stages run.json plans; None without run.json (then every file is expected)
        self.planned: set[str] | None = None

    def json(
        self, path: Path, who: str, command: str, stage: str | None = None
    ) -> dict[str, Any] | None:
        """The JSON object in `path`, or None (and a line in `missing`) if absent or garbled.
        A file of a `stage` the run does not plan is not missing when absent."""
        data, why = read_json(path)
        unplanned = stage is not None and self.planned is not None and stage not in self.planned
        if data is None and not (why == NOT_FOUND and unplanned):
            left_out = "" if why == NOT_FOUND else "; left out"
            how = f"tinybert run continues it, or: {command}"
            self.missing.append(f"{who}: {path} {why}{left_out} ({how})")
        return data


# ---------------------------------------------------------------------------------------------
# models


def _model_dir(run_dir: Path, role: str, given: str | None, source: str, notes: list[str]) -> Path:
    """The folder of `role`: the path `source` (run.json, a saved config) names, except where
    that is this run's conventional place (then RUN_DIR's copy, so a copied run reads its own
    files) or gone (then the conventional place, if it exists)."""
    conventional = run_dir / MODEL_DIRS[role]
    if not given:
        return conventional
    path = Path(given)
    tail = Path(MODEL_DIRS[role]).parts
    if path.parts[-len(tail) :] == tail and (conventional.is_dir() or not path.is_dir()):
        return conventional
    if path.is_dir():
        if source != RUN_FILE:  # run.json names the models on purpose; a config only hints
            notes.append(f"{role}: read {path} ({source} names it)")
        return path
    if conventional.is_dir():
        notes.append(f"{role}: {given} ({source} names it) not found; read {conventional} instead")
        return conventional
    return path


def _teacher_source(
    run_dir: Path, run: dict[str, Any] | None, config: dict[str, Any]
) -> tuple[str | None, str]:
    """Where the teacher is said to be: run.json's models.teacher, else the distilled student's
    config.yaml `teacher` (a run without finetune distils a teacher from elsewhere)."""
    if run is not None:
        return _str(_section(run, "models").get("teacher")), RUN_FILE
    for key in ("prediction", "intermediate"):
        path = run_dir / SERIES[key][0] / CONFIG_FILE
        if path.is_file():
            return _str(config.get("teacher")), str(path)
    return None, ""


def _read_model(reader: _Reader, role: str, path: Path, cfg: str, train_cmd: str) -> Model:
    """What the report needs of one model folder; absent parts go to reader.missing."""
    model = Model(role=role, path=path)
    weights = path / WEIGHTS_FILE
    if weights.is_file():
        model.params = count_parameters(weights)
        model.sizes["safetensors"] = weights.stat().st_size
        if model.params is None:
            reader.missing.append(f"{role}: {weights} has no readable safetensors header")
    else:
        reader.missing.append(
            f"{role}: {weights} not found (tinybert run continues it, or: {train_cmd})"
        )
    evaluate = f"tinybert evaluate {cfg} --model {path}"
    results = reader.json(path / EVAL_FILE, role, evaluate, "evaluate")
    if results is not None:
        model.metrics, model.splits = metric_values(results), dev_splits(numbers(results))
        model.baseline, model.verdict = baseline_values(results), verdict_of(results)
        model.task = results["task"] if isinstance(results.get("task"), str) else None
    _read_export(reader, model, cfg)
    benchmark = f"tinybert benchmark {cfg} --model {path}"
    speed = reader.json(path / SPEED_FILE, role, benchmark, "benchmark")
    if speed is not None:
        model.speed = _parse_speed(speed)
    return model


def _read_export(reader: _Reader, model: Model, cfg: str) -> None:
    """ONNX sizes and dev metrics from onnx/export.json (sizes from the files if it is absent)."""
    folder = model.path / EXPORT_SUBDIR
    model_type = json_or_empty(model.path / "config.json").get("model_type", "bert")
    if model_type != "bert" and not export_json(model.path).is_file():
        reader.notes.append(
            f"{model.role}: a {model_type} model, not exported (tinybert exports BERTs)"
        )
        return
    command = f"tinybert export {cfg} --model {model.path} --int8"
    data = reader.json(export_json(model.path), model.role, command, "export")
    files = numbers(data.get("files") or {}) if data and isinstance(data.get("files"), dict) else {}
    for name, label in ((FP32_FILE, "onnx fp32"), (INT8_FILE, "onnx int8")):
        if name in files:
            model.sizes[label] = int(files[name])
        elif (folder / name).is_file():
            model.sizes[label] = (folder / name).stat().st_size
    if not data:
        return
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        model.export_metrics = {
            str(k): metric_values(v) for k, v in metrics.items() if isinstance(v, dict)
        }
    if isinstance(data.get("main_metric"), str):
        model.export_main = data["main_metric"]


def _parse_speed(data: dict[str, Any]) -> Speed:
    """speed.json -> Speed; rows without a backend, precision, batch size or rate are dropped."""
    speed = Speed(
        machine=str(data.get("machine") or ""),
        threads=_int(data.get("threads")),
        sequences=_int(data.get("sequences")),
        mean_tokens=number(data.get("mean_tokens")),
        max_seq_length=_int(data.get("max_seq_length")),
        measured_at=str(data.get("measured_at") or ""),
    )
    rows = data.get("results")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        batch, rate = _int(row.get("batch_size")), number(row.get("sequences_per_s"))
        backend, precision = row.get("backend"), row.get("precision")
        if batch and rate is not None and isinstance(backend, str) and isinstance(precision, str):
            speed.results[(backend, precision, batch)] = rate
    return speed


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    found = number(value)
    return int(found) if found is not None and found == int(found) else None


# ---------------------------------------------------------------------------------------------
# training stages


def read_series(reader: _Reader, key: str, command: str) -> Series | None:
    """A stage's metrics.jsonl, skipping (and noting) lines that are not metric rows."""
    folder, label, _ = SERIES[key]
    path = reader.run_dir / folder / METRICS_FILE
    if not path.is_file():
        how = f"tinybert run continues it, or: {command}"
        reader.missing.append(f"{label}: {path} not found ({how})")
        return None
    log = read_metrics(path)
    if log.error:
        reader.missing.append(f"{label}: {path} could not be read ({log.error}); left out")
        return None
    series = Series(key=key, label=label, path=path)
    train: dict[int, dict[str, float]] = {}
    evals: dict[int, dict[str, float]] = {}
    bad = list(log.bad)
    for line, row in log.numbered:
        step = _int(row.get("step"))
        if step is None:
            bad.append(line)
        elif row.get("done"):
            series.best_step = _int(row.get("best_step"))
            series.best_metric = number(row.get("best_metric"))
        elif isinstance(row.get("eval"), dict):
            evals[step] = numbers(row["eval"])
        elif number(row.get("loss")) is not None:
            train[step] = {**numbers(row), "step": float(step)}  # a resumed run rewrites a step
    if bad:
        reader.missing.append(
            f"{label}: {path}: {len(bad)} line(s) are not metric rows (line {min(bad)}"
            f"{' ...' if len(bad) > 1 else ''}); skipped"
        )
    series.train = [train[s] for s in sorted(train)]
    series.evals = sorted(evals.items())
    resolved = recorded_precision(log.rows)
    if resolved is not None:  # the stage's config.yaml says whether auto chose it
        section = read_config(reader.run_dir / folder).get(SECTIONS[key])
        setting = section.get("precision") if isinstance(section, dict) else None
        series.precision = precision_shown(resolved, setting)
    return series


def _status(item: dict[str, Any]) -> str:
    status = str(item.get("status") or "?")
    # `tinybert run` builds its report while the report stage is the one running
    return "this report" if item["name"] == "report" and status == "running" else status


def _stages(run: dict[str, Any]) -> list[Stage]:
    stages = []
    items = run.get("stages")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            stages.append(
                Stage(
                    name=item["name"],
                    status=_status(item),
                    seconds=number(item.get("seconds")),
                    command=str(item.get("command") or ""),
                )
            )
    return stages


# ---------------------------------------------------------------------------------------------
# the run


def _config_args(run_dir: Path, run: dict[str, Any] | None) -> str:
    """`--config ...` for commands in messages: run.json's configs and overrides, else a stage's
    saved config.yaml (the full merged config), else a placeholder."""
    if run and isinstance(run.get("configs"), list) and run["configs"]:
        parts = [f"--config {c}" for c in run["configs"]]
        overrides = run.get("overrides")
        parts += [str(o) for o in overrides] if isinstance(overrides, list) else []
        return " ".join(parts)
    for key in CONFIG_ORDER:
        path = run_dir / SERIES[key][0] / CONFIG_FILE
        if path.is_file():
            return f"--config {path}"
    return "--config RUN.yaml"


def _saved_config(run_dir: Path) -> dict[str, Any]:
    """The first readable stage config.yaml (student first: it holds distill.phases as run)."""
    configs = (read_config(run_dir / SERIES[key][0]) for key in CONFIG_ORDER)
    return next((config for config in configs if config), {})


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _expected_series(
    run_dir: Path, stages: list[Stage] | None, config: dict[str, Any], teacher: Path
) -> list[str]:
    """Stages whose metrics.jsonl the report expects: those run.json lists (or, without it, task
    distillation, and finetune unless the teacher came from elsewhere), plus any whose folder
    exists."""
    phases = _section(config, "distill").get("phases") or ["intermediate", "prediction"]
    if stages is not None:
        names = {s.name for s in stages}
    else:
        names = {"task-distill"}
        if teacher == run_dir / MODEL_DIRS["teacher"]:
            names.add("finetune")
    keys = []
    for key, (folder, _, stage) in SERIES.items():
        wanted = stage in names and (stage != "task-distill" or key in phases)
        if wanted or (run_dir / folder).is_dir():
            keys.append(key)
    return keys


def _command(stage: str, stages: list[Stage], cfg: str) -> str:
    for s in stages:
        if s.name == stage and s.command:
            return s.command
    return f"tinybert {STAGE_COMMANDS.get(stage, stage)} {cfg}"


def check_run_dir(run_dir: Path) -> None:
    """A folder with at least run.json or one stage folder, else one clear UserError."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory; give the output_dir of a tinybert run")
    if not any((run_dir / p).exists() for p in (RUN_FILE, "teacher", "student", "general")):
        raise UserError(
            f"{run_dir}: no tinybert run here (no {RUN_FILE}, teacher/, student/ or general/); "
            "give the output_dir of a run (`tinybert run --config RUN.yaml` writes one)"
        )


def collect_run(run_dir: str | Path) -> RunData:
    """Read everything the report shows from `run_dir`; raises UserError only when the folder
    holds no run at all."""
    root = Path(run_dir)
    check_run_dir(root)
    reader = _Reader(root)
    run = _read_run(reader)
    stages = _stages(run) if run else []
    if run:
        reader.planned = {s.name for s in stages}
    cfg = _config_args(root, run)
    config = _saved_config(root)
    given, source = _teacher_source(root, run, config)
    teacher_dir = _model_dir(root, "teacher", given, source, reader.notes)
    student = _str(_section(run, "models").get("student")) if run else None
    student_dir = _model_dir(root, "student", student, RUN_FILE, reader.notes)
    series = {}
    for key in _expected_series(root, stages if run else None, config, teacher_dir):
        found = read_series(reader, key, _command(SERIES[key][2], stages, cfg))
        if found is not None:
            series[key] = found
    models = (
        _read_model(reader, "teacher", teacher_dir, cfg, _command("finetune", stages, cfg)),
        _read_model(reader, "student", student_dir, cfg, _command("task-distill", stages, cfg)),
    )
    task = _task_name(run, config, *models[::-1])
    return RunData(
        run_dir=root,
        task=task,
        main_metric=_main_metric(task, config, models, series),
        teacher=models[0],
        student=models[1],
        series=series,
        stages=stages,
        missing=reader.missing,
        notes=reader.notes,
        starts=_starts(root),
        attention=_recorded(root, teacher_attention),
    )


def _starts(root: Path) -> dict[str, str]:
    """How each distillation's student started, by `tinybert run` stage: GD's init.json, and
    TD's (phase 1's, or phase 2's when it ran alone). Stages that recorded none are left out."""
    return _recorded(root, student_start)


def _recorded(root: Path, read: Callable[[Path], str]) -> dict[str, str]:
    """`read` of each distillation stage's folder, by `tinybert run` stage: GD's, and TD's
    (phase 1's, or phase 2's when it ran alone). Stages where it found nothing are left out."""
    found = {k: read(root / SERIES[k][0]) for k in SERIES}
    td = found["intermediate"] or found["prediction"]
    return {k: v for k, v in (("general-distill", found["general"]), ("task-distill", td)) if v}


def _read_run(reader: _Reader) -> dict[str, Any] | None:
    """run.json, or None (and a line in `missing`: the stage table is left out)."""
    path = reader.run_dir / RUN_FILE
    if path.exists():
        return reader.json(path, "run", "tinybert run --config RUN.yaml")
    reader.missing.append(
        f"run: {path} not found (`tinybert run` writes it); the stage times and commands are "
        "left out"
    )
    return None


def _task_name(run: dict[str, Any] | None, config: dict[str, Any], *models: Model) -> str | None:
    """The task: run.json's, else the saved config's, else eval_results.json's."""
    if run and isinstance(run.get("task"), str):
        return str(run["task"])
    name = _section(config, "task").get("name")
    if isinstance(name, str):
        return name
    return next((m.task for m in models if m.task), None)


# ---------------------------------------------------------------------------------------------
# the main metric


def _main_metric(
    task: str | None, config: dict[str, Any], models: tuple[Model, Model], series: dict[str, Series]
) -> str | None:
    """The eval key that picks best/ (files.main_metric: task.metric or the task's own). For an
    unknown task: export.json's main_metric, else the key whose value the "done" row recorded as
    best_metric, else the first metric key of eval_results.json (or of an eval row)."""
    teacher, student = models
    candidates = [student.metrics, teacher.metrics]
    candidates += [s.evals[-1][1] for s in series.values() if s.evals]
    guesses = [student.export_main, teacher.export_main, _from_best(series)]
    guesses += [next(iter(metric_values(m)), None) for m in candidates]
    return main_metric(task, _section(config, "task"), _splits(models, series), guesses)


def _splits(models: tuple[Model, Model], series: dict[str, Series]) -> list[str]:
    """The dev splits of a multi-split task (MNLI: [dev_matched, dev_mismatched]), else []."""
    candidates = [m.splits for m in models[::-1]]  # the student's first
    candidates += [dev_splits(row) for s in series.values() for _, row in s.evals[:1]]
    return next((found for found in candidates if found), [])


def _from_best(series: dict[str, Series]) -> str | None:
    """The metric key whose value at best_step is the recorded best_metric (one key only)."""
    for s in series.values():
        if s.best_metric is None:
            continue
        rows = [m for step, m in s.evals if s.best_step in (None, step)]
        for metrics in rows:
            hits = [k for k, v in metric_values(metrics).items() if v == s.best_metric]
            if len(hits) == 1:
                return hits[0]
    return None


# ---------------------------------------------------------------------------------------------
# speed keys

BACKEND_NAMES = {"torch": "torch", "onnx": "ORT"}
# The speed the bar chart compares, in order of preference (both models need it).
PREFERRED_SPEED = (("onnx", "fp32", 32), ("torch", "fp32", 32), ("onnx", "fp32", 1))


def speed_label(key: tuple[str, str, int]) -> str:
    """("onnx", "fp32", 32) -> "ORT fp32, batch 32"."""
    backend, precision, batch = key
    return f"{BACKEND_NAMES.get(backend, backend)} {precision}, batch {batch}"


def speed_keys(*models: Model) -> list[tuple[str, str, int]]:
    """Every (backend, precision, batch) any of `models` was timed at: torch first, then ORT
    fp32 and int8, each by batch size."""
    keys = {k for m in models if m.speed for k in m.speed.results}
    order = {"torch": 0, "onnx": 1}
    return sorted(keys, key=lambda k: (order.get(k[0], 2), k[0], k[1], k[2]))


def common_speed(teacher: Model, student: Model) -> tuple[str, str, int] | None:
    """The speed both models were timed at that compares them best (ORT fp32 batch 32 first),
    else the largest batch both have; None if they share none."""
    if teacher.speed is None or student.speed is None:
        return None
    shared = set(teacher.speed.results) & set(student.speed.results)
    for key in PREFERRED_SPEED:
        if key in shared:
            return key
    return max(shared, key=lambda k: (k[2], k[1] == "fp32"), default=None)
