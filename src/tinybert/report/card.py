"""Model cards: a Hugging Face style README.md beside every saved model, built from files only.

    write_card("runs/sst2/student/prediction/best")   # -> Path of README.md, or None

The card is derived from what lies on disk, so rewriting it after `evaluate`, `export` or
`benchmark` adds their numbers:
    MODEL_DIR/config.json, model.safetensors          architecture, labels, shape, parameters
    MODEL_DIR/eval_results.json                       dev results (preferred)
    MODEL_DIR/onnx/export.json                        ONNX sizes and ONNX fp32/int8 dev metrics
    MODEL_DIR/speed.json                              measured speed
    STAGE/config.yaml, STAGE/metrics.jsonl            settings, lineage, best step (STAGE = parent)
The stage is the parent folder's name: teacher (finetune), general (general distillation),
intermediate / prediction (task distillation phases 1 and 2); any other name gets a generic card.

Front matter follows the Hub's model-card layout (library_name, pipeline_tag, tags, base_model,
datasets, language, metrics, model-index), so `huggingface_hub.ModelCard.load` reads it. A card
we wrote starts its body with `MARKER`; a README.md without it (the user's own, or an upstream
model's) is never overwritten. Importing this module does not import torch (cards are written
by commands that only read files, `tinybert report`); the task registry that names a task's main
metric (report/files.py) is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinybert.paths import write_atomic
from tinybert.report.files import (
    CARD_FILE,
    EVAL_FILE,
    INIT_FILE,
    METRICS_FILE,
    SPEED_FILE,
    WEIGHTS_FILE,
    baseline_values,
    count_parameters,
    dev_splits,
    export_json,
    is_trivial,
    json_or_empty,
    kept_over_baseline,
    main_metric,
    metric_values,
    precision_shown,
    read_config,
    read_metrics,
    recorded_precision,
    score_ratio,
    student_start,
    teacher_attention,
    trivial_sentence,
    verdict_of,
)

MARKER = (
    "<!-- tinybert model card: rewritten by tinybert when this model is trained, evaluated, "
    "exported or benchmarked -->"
)

_PIPELINES = {
    "BertForSequenceClassification": "text-classification",
    "BertForTokenClassification": "token-classification",
    "BertModel": "feature-extraction",
    "BertForMaskedLM": "fill-mask",
}
_AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "fill-mask": "AutoModelForMaskedLM",
}
_GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
_TITLES = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "tnews": "TNEWS",
    "cluener": "CLUENER", "jsonl": "a JSON-lines task", "csv": "a CSV task",
}  # fmt: skip
# Our metric names -> the Hub's metric ids (others keep our name).
_HUB_METRICS = {"mcc": "matthews_correlation", "pearson": "pearsonr", "spearman": "spearmanr"}
_STAGES = {
    "teacher": "fine-tuning (the teacher)",
    "general": "general distillation",
    "intermediate": "task distillation phase 1 (intermediate layers)",
    "prediction": "task distillation phase 2 (prediction layer)",
}


# ---------------------------------------------------------------------------------------------
# API


def render_card(model_dir: str | Path) -> str:
    """The README.md text (front matter, marker line, Markdown body) for a saved model dir."""
    facts = _gather(Path(model_dir))
    front = yaml.safe_dump(_front_matter(facts), sort_keys=False, allow_unicode=True)
    body = [
        _intro(facts),
        _lineage(facts),
        _settings(facts),
        _evaluation(facts),
        _speed(facts),
        _usage(facts),
        _limits(facts),
    ]
    text = "\n\n".join(section for section in body if section)
    return f"---\n{front}---\n{MARKER}\n\n{text}\n"


def write_card(model_dir: str | Path) -> Path | None:
    """Write model_dir/README.md atomically and return its path. None (nothing written) when
    model_dir has no config.json, or its README.md exists and is not a tinybert card."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        return None
    out = folder / CARD_FILE
    if out.exists() and not _is_ours(out):
        return None
    write_atomic(out, render_card(folder))
    return out


def write_cards(model_dirs: Iterable[str | Path]) -> list[Path]:
    """write_card for each existing dir; the README.md paths written."""
    written = []
    for model_dir in model_dirs:
        if Path(model_dir).is_dir():
            path = write_card(model_dir)
            if path is not None:
                written.append(path)
    return written


def _is_ours(path: Path) -> bool:
    if not path.is_file():
        return False  # a folder named README.md: leave it alone
    return MARKER in path.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Reading the files


@dataclass
class _Facts:
    """Everything the card says, read from disk once. Missing files leave empty values."""

    dir: Path
    config: dict  # config.json
    run: dict  # the stage's config.yaml (full Config), {} if absent
    rows: list[dict]  # the stage's metrics.jsonl
    stage: str  # teacher | general | intermediate | prediction | "" (unknown)
    task: str  # canonical task name ("" for GD or unknown)
    params: int | None
    results: dict  # eval_results.json, {} if absent
    main: str = ""  # the eval key that picks best/ ("dev_matched/accuracy" for MNLI)
    eval: dict[str, float] = field(default_factory=dict)  # dev metrics, eval_results.json keys
    eval_source: str = ""
    baseline: dict[str, float] = field(default_factory=dict)  # the dev set's trivial baseline
    verdict: dict = field(default_factory=dict)  # the main metric against it
    export: dict = field(default_factory=dict)
    speed: dict = field(default_factory=dict)

    @property
    def pipeline(self) -> str | None:
        arch = (self.config.get("architectures") or [""])[0]
        return _PIPELINES.get(arch)

    @property
    def done(self) -> dict:
        """The stage's final metrics.jsonl row ({} if the stage did not finish)."""
        return _done_row(self.rows)

    @property
    def metric(self) -> str:
        """The main metric's name, without a split prefix ("accuracy")."""
        return self.main.rpartition("/")[2]

    def section(self, name: str) -> dict:
        value = self.run.get(name)
        return value if isinstance(value, dict) else {}


def _gather(model_dir: Path) -> _Facts:
    stage_dir = model_dir.parent
    facts = _Facts(
        dir=model_dir,
        config=json_or_empty(model_dir / "config.json"),
        run=read_config(stage_dir),
        rows=read_metrics(stage_dir / METRICS_FILE).rows,
        stage=stage_dir.name if stage_dir.name in _STAGES else "",
        task="",
        params=count_parameters(model_dir / WEIGHTS_FILE),
        results=json_or_empty(model_dir / EVAL_FILE),
        export=json_or_empty(export_json(model_dir)),
        speed=json_or_empty(model_dir / SPEED_FILE),
    )
    facts.task = _task_name(facts)
    facts.main = _main_metric(facts)
    facts.eval, facts.eval_source = _dev_results(facts)
    facts.baseline, facts.verdict = baseline_values(facts.results), verdict_of(facts.results)
    return facts


def _done_row(rows: list[dict]) -> dict:
    return next((r for r in reversed(rows) if r.get("done")), {})


def _task_name(facts: _Facts) -> str:
    """The task, canonical ("SST-2" -> "sst2"); "" for a GD encoder or when nothing says."""
    if facts.stage == "general":
        return ""
    names = [
        facts.section("task").get("name"),
        facts.results.get("task"),
        facts.speed.get("task"),
    ]
    name = next((n for n in names if isinstance(n, str) and n), "")
    return name.lower().replace("-", "").replace("_", "")


def _main_metric(facts: _Facts) -> str:
    """The eval key that picks best/ (files.main_metric: config.yaml task.metric, else the
    task's own); for an unknown task export.json's, else the first metric found, else accuracy."""
    evals = [facts.results] + [r["eval"] for r in facts.rows if isinstance(r.get("eval"), dict)]
    splits = next((found for found in map(dev_splits, evals) if found), [])
    guesses = [facts.export.get("main_metric")]
    guesses += [next(iter(metric_values(e)), None) for e in evals]
    return main_metric(facts.task, facts.section("task"), splits, guesses) or "accuracy"


def _dev_results(facts: _Facts) -> tuple[dict[str, float], str]:
    """(metrics, where from): eval_results.json if present, else the stage's eval row of this
    checkpoint (best/: the best step; final/: the last step)."""
    saved = facts.results
    metrics = _scores(saved)
    if metrics:
        how = " ".join(str(saved[k]) for k in ("backend", "precision") if saved.get(k))
        return metrics, f"`tinybert evaluate` ({how})" if how else "`tinybert evaluate`"
    row = _eval_row(facts)
    if row is None:
        return {}, ""
    return _scores(row["eval"]), f"evaluation during training (metrics.jsonl, step {row['step']})"


def _eval_row(facts: _Facts) -> dict | None:
    done = facts.done
    evals = [r for r in facts.rows if isinstance(r.get("eval"), dict)]
    if not done or not evals:
        return None
    if facts.dir.name == "final":
        return next((r for r in evals if r.get("step") == done.get("step")), None)
    if facts.dir.name != "best":
        return None
    if done.get("best_step") is not None:
        return next((r for r in evals if r.get("step") == done["best_step"]), None)
    key = _split_key(_scores(evals[-1]["eval"]), facts.main)  # older runs: no best_step
    return next((r for r in evals if key and r["eval"].get(key) == done.get("best_metric")), None)


def _scores(results: dict) -> dict[str, float]:
    """The metric entries of an eval dict (numbers that are not counts, NaN kept), in order."""
    return metric_values(results, finite=False)


def _split_key(metrics: dict[str, float], key: str) -> str | None:
    """`key` as these results spell it: itself, else the first key with the same metric name
    ("dev_matched/accuracy" for "accuracy", or "matched/accuracy" for "dev_matched/accuracy")."""
    if key in metrics:
        return key
    name = key.rpartition("/")[2]
    return next((k for k in metrics if k.rpartition("/")[2] == name), None)


def _locate(given: str, near: Path) -> Path | None:
    """A path from config.yaml, as given (relative to where the command ran, unknown here) or
    relative to one of `near`'s ancestors; None if neither exists."""
    if not given:
        return None
    path = Path(given)
    if path.exists():
        return path
    if path.is_absolute():
        return None
    return next((a / path for a in near.resolve().parents if (a / path).exists()), None)


# ---------------------------------------------------------------------------------------------
# Front matter


def _front_matter(facts: _Facts) -> dict[str, Any]:
    data: dict[str, Any] = {"library_name": "transformers"}
    if facts.pipeline:
        data["pipeline_tag"] = facts.pipeline
    data["tags"] = _tags(facts)
    base = facts.section("card").get("base_model")
    if isinstance(base, str) and base:
        data["base_model"] = base
    dataset, _, _ = _hub_dataset(facts.task)
    if dataset:
        data["datasets"] = [dataset]
    language = "en" if facts.task in _GLUE else "zh" if facts.task in ("tnews", "cluener") else ""
    if language:
        data["language"] = [language]
    if facts.eval:
        names = [_HUB_METRICS.get(k.rpartition("/")[2], k.rpartition("/")[2]) for k in facts.eval]
        data["metrics"] = list(dict.fromkeys(names))
        data["model-index"] = _model_index(facts)
    return data


def _tags(facts: _Facts) -> list[str]:
    role = {"teacher": "teacher", "general": "general-distillation"}.get(facts.stage, "")
    if facts.stage in ("intermediate", "prediction"):
        role = "task-distillation"
    tags = ["tinybert", "knowledge-distillation", "bert", role, facts.task]
    return [t for t in tags if t]


def _hub_dataset(task: str) -> tuple[str, str, str]:
    """(Hub dataset id, its config, display name); ids only where one is known."""
    if task in _GLUE:
        return "nyu-mll/glue", task, f"GLUE {task.upper()}"
    if task == "tnews":
        return "clue/clue", "tnews", "CLUE TNEWS"
    return "", "", task.upper() if task == "cluener" else task


def _model_name(facts: _Facts) -> str:
    shape = f"{facts.config.get('num_hidden_layers', '?')}l-{facts.config.get('hidden_size', '?')}"
    if facts.stage == "teacher":
        return f"bert-{shape}-{facts.task}-teacher"
    if facts.stage == "general":
        return f"tinybert-{shape}-general"
    if facts.stage in ("intermediate", "prediction"):
        return f"tinybert-{shape}-{facts.task}"
    return "-".join(p for p in ("bert", shape, facts.task) if p)


def _model_index(facts: _Facts) -> list[dict]:
    """The Hub's model-index: one result per dev split, each with that split's metrics."""
    pipeline = facts.pipeline or "text-classification"
    task = {"type": pipeline, "name": pipeline.replace("-", " ").title()}
    hub_id, config, title = _hub_dataset(facts.task)
    results = []
    for split, metrics in _by_split(facts.eval, facts.metric).items():
        dataset = {"name": title or "dev", "type": hub_id or facts.task or "unknown"}
        if config:
            dataset["config"] = config
        dataset["split"] = _hub_split(split)
        entries = [
            {"type": _HUB_METRICS.get(name, name), "value": value, "name": name}
            for name, value in metrics.items()
            if math.isfinite(value)  # the Hub rejects NaN; the body table still shows it
        ]
        if entries:
            results.append({"task": dict(task), "dataset": dataset, "metrics": entries})
    return [{"name": _model_name(facts), "results": results}] if results else []


def _by_split(metrics: dict[str, float], main: str) -> dict[str, dict[str, float]]:
    """{"dev_matched/accuracy": x, ...} -> {"dev_matched": {"accuracy": x}}; an unprefixed key
    belongs to split "". The main metric comes first in each split."""
    splits: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, _, name = key.rpartition("/")
        splits.setdefault(split, {})[name] = value
    return {s: dict(sorted(m.items(), key=lambda kv: kv[0] != main)) for s, m in splits.items()}


def _hub_split(split: str) -> str:
    if "mismatched" in split:
        return "validation_mismatched"
    if "matched" in split:
        return "validation_matched"
    return "validation"


# ---------------------------------------------------------------------------------------------
# Body


def _shape(facts: _Facts) -> str:
    """ "4-layer, 312-wide"."""
    c = facts.config
    return f"{c.get('num_hidden_layers', '?')}-layer, {c.get('hidden_size', '?')}-wide"


def _size_sentence(facts: _Facts) -> str:
    """ "Shape: 12 attention heads, FFN 1200, vocabulary 30522; 14.5M parameters." """
    c = facts.config
    parts = [
        f"{c['num_attention_heads']} attention heads" if "num_attention_heads" in c else "",
        f"FFN {c['intermediate_size']}" if "intermediate_size" in c else "",
        f"vocabulary {c['vocab_size']}" if "vocab_size" in c else "",
    ]
    text = ", ".join(p for p in parts if p)
    if facts.params is not None:
        text += f"{'; ' if text else ''}{_count(facts.params)} parameters"
    return f"Shape: {text}." if text else ""


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n:,}"


def _task_phrase(facts: _Facts) -> str:
    """ "SST-2 (text classification; labels: 0, 1)"."""
    title = _TITLES.get(facts.task, facts.task or "an unrecorded task")
    what = (facts.pipeline or "").replace("-", " ")
    labels = facts.config.get("id2label")
    if isinstance(labels, dict) and facts.pipeline != "feature-extraction":
        names = [str(labels[k]) for k in sorted(labels, key=lambda k: int(k) if k.isdigit() else 0)]
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        what = f"{what}; labels: {shown}" if what else f"labels: {shown}"
    return f"{title} ({what})" if what else title


def _checkpoint_phrase(facts: _Facts) -> str:
    done = facts.done
    total = f" of {done['step']}" if done.get("step") is not None else ""
    if facts.dir.name == "best":
        step = f", step {done['best_step']}{total}" if done.get("best_step") is not None else ""
        return f"This is `best/`: the checkpoint with the best dev {facts.metric}{step}."
    if facts.dir.name == "final":
        at = f" (step {done['step']})" if done.get("step") is not None else ""
        return f"This is `final/`: the weights at the end of training{at}."
    return ""


def _intro(facts: _Facts) -> str:
    title = f"# {_model_name(facts)}"
    shape, task = _shape(facts), _task_phrase(facts)
    teacher = facts.run.get("teacher") or ""
    if facts.stage == "teacher":
        base = facts.run.get("model") or "an unrecorded model"
        text = (
            f"A {shape} BERT fine-tuned on {task} from `{base}`, the teacher for TinyBERT "
            "task distillation."
        )
    elif facts.stage == "general":
        text = (
            f"A {shape} TinyBERT encoder from general distillation: trained to match the "
            f"attention and hidden states of `{teacher or 'an unrecorded teacher'}` on plain "
            "text, with no task. It has no task head."
        )
    elif facts.stage in ("intermediate", "prediction"):
        text = (
            f"A {shape} TinyBERT student for {task}, distilled from the teacher "
            f"`{teacher or 'unrecorded'}` by task distillation; saved by "
            f"{_STAGES[facts.stage]}."
        )
    else:
        arch = (facts.config.get("architectures") or ["a BERT model"])[0]
        text = f"A {shape} {arch} for {task}, saved by tinybert (its stage is not recorded)."
    sentences = (text, _size_sentence(facts), _checkpoint_phrase(facts))
    warning = ""
    if is_trivial(facts.verdict):  # said first, not only under Limits
        warning = "\n\n**Failed: no better than the trivial baseline of the dev set (see Limits).**"
    return f"{title}\n\n{' '.join(p for p in sentences if p)}{warning}"


def _lineage(facts: _Facts) -> str:
    if not facts.run:
        return "## Lineage\n\nNot recorded: no config.yaml beside this model's folder."
    items = {
        "teacher": _teacher_lineage,
        "general": _general_lineage,
        "intermediate": _student_lineage,
        "prediction": _student_lineage,
    }.get(facts.stage)
    if items is None:
        return ""
    return "## Lineage\n\n" + "\n".join(f"- {line}" for line in items(facts))


def _teacher_lineage(facts: _Facts) -> list[str]:
    lines = [f"Fine-tuned from `{facts.run.get('model') or 'unrecorded'}`."]
    return lines + [_data_line(facts)]


def _general_lineage(facts: _Facts) -> list[str]:
    teacher = f"Teacher: `{facts.run.get('teacher') or 'unrecorded'}` (no task: plain text)."
    lines = [_with_attention(teacher, facts)]
    corpus = facts.section("corpus").get("path") or ""
    meta = json_or_empty(p / "meta.json") if (p := _locate(corpus, facts.dir)) else {}
    size = ""
    if meta.get("sequences") is not None:
        size = f": {meta['sequences']:,} sequences"
        if meta.get("tokens") is not None:
            size += f", {meta['tokens']:,} tokens"
    lines.append(f"Corpus: `{corpus or 'unrecorded'}`{size}.")
    recorded = student_start(facts.dir.parent)  # init.json: student.init as resolved
    if recorded:
        return lines + [f"Student start: {recorded}."]
    init = facts.section("student").get("init") or "random"
    path = facts.section("student").get("path") or ""
    start = f"the checkpoint `{path}`" if init == "checkpoint" and path else f"{init} weights"
    return lines + [f"Student started from {start} (student.init={init})."]


def _student_lineage(facts: _Facts) -> list[str]:
    return [_teacher_line(facts), _init_line(facts), _data_line(facts), _phases_line(facts)]


def _teacher_line(facts: _Facts) -> str:
    given = facts.run.get("teacher") or ""
    score = _teacher_score(facts, given)
    line = f"Teacher: `{given or 'unrecorded'}`{f' ({score})' if score else ''}."
    return _with_attention(line, facts)


def _with_attention(line: str, facts: _Facts) -> str:
    """`line`, then what the student learned of the teacher's attention, where recorded."""
    attention = teacher_attention(facts.dir.parent)  # init.json beside config.yaml
    return f"{line} {attention}." if attention else line


def _teacher_score(facts: _Facts, given: str) -> str:
    """ "dev accuracy 0.8704" of the teacher: its eval_results.json (with the share of its gain
    over the trivial baseline this model keeps), else its stage's best."""
    found = _locate(given, facts.dir)
    run_dir = facts.dir.parent.parent.parent  # RUN/student/prediction/best
    if found is None and (run_dir / "teacher" / "best").is_dir():
        found = run_dir / "teacher" / "best"  # the conventional layout
    if found is None:
        return ""
    saved = json_or_empty(found / EVAL_FILE)
    results = _scores(saved)
    key = _split_key(results, facts.main)
    if key is not None:
        weak = "; no better than the trivial baseline" if is_trivial(verdict_of(saved)) else ""
        return f"dev {key} {results[key]:.4f}{weak}{_kept_phrase(facts, key, results[key])}"
    done = _done_row(read_metrics(found.parent / METRICS_FILE).rows)
    best = done.get("best_metric")
    return (
        f"best dev {facts.metric} {best:.4f} during fine-tuning" if isinstance(best, float) else ""
    )


def _kept_phrase(facts: _Facts, key: str, teacher: float) -> str:
    """ "; this model keeps 74.1% of the teacher's gain over the trivial baseline (95.3% of its
    score)" where this model's score and the baseline of `key` are known."""
    own, base = facts.eval.get(key), facts.baseline.get(key)
    if own is None or base is None or not math.isfinite(own):
        return ""
    kept, ratio = kept_over_baseline(teacher, own, base), score_ratio(teacher, own)
    if kept is None:
        return ""
    plain = f" ({100 * ratio:.1f}% of its score)" if ratio is not None else ""
    gain = f"{100 * kept:.1f}% of the teacher's gain over the trivial baseline"
    return f"; this model keeps {gain}{plain}"


def _init_line(facts: _Facts) -> str:
    student = facts.section("student")
    start = json_or_empty(facts.dir.parent / INIT_FILE)  # student.init as resolved, if recorded
    init = start.get("init") or student.get("init") or "random"
    path = student.get("path") or ""
    if init == "select":
        source, layers = start.get("source") or "the teacher", start.get("layers")
        return (
            f"Initialised by weight selection from `{source}`: its layers {layers}, each width "
            f"taken at evenly spaced indices (student.init={start.get('asked', init)})."
        )
    if init == "auto":  # no init.json beside config.yaml: what auto chose is not recorded
        return "Initialised as student.init=auto chose (not recorded)."
    if init == "checkpoint" and path:
        gd = Path(path).parent.name == "general"
        what = "the general-distillation (GD) student" if gd else "the checkpoint"
        return f"Initialised from {what} `{path}` (student.init={start.get('asked', init)})."
    if init == "teacher_layers":
        layers = start.get("layers") or student.get("teacher_layers")
        return f"Initialised from the teacher's layers {layers} (no general distillation)."
    return "Randomly initialised (no general distillation)."


def _data_line(facts: _Facts) -> str:
    task = facts.section("task")
    train_file = task.get("train_file") or ""
    sample = task.get("max_train_examples")
    sampled = f" (a random sample of {sample:,} rows)" if isinstance(sample, int) else ""
    if not train_file:
        where = f" in `{task['data_dir']}`" if task.get("data_dir") else ""
        return f"Training data: the task's training split{where}{sampled}; no augmentation."
    found = _locate(train_file, facts.dir)
    summary = json_or_empty(Path(f"{found}.summary.json")) if found else {}
    if not summary:  # no `tinybert augment` summary beside it: a file of the user's own
        return f"Training data: `{train_file}` (task.train_file){sampled}."
    counts = ""
    if summary.get("rows_in") is not None and summary.get("rows_out") is not None:
        counts = f": {summary['rows_in']:,} rows in, {summary['rows_out']:,} rows out"
    return (
        f"Training data: the augmented file `{train_file}` (`tinybert augment`){counts}{sampled}."
    )


def _phases_line(facts: _Facts) -> str:
    distill = facts.section("distill")
    phases = distill.get("phases") or ["intermediate", "prediction"]
    names = {
        "intermediate": "1 (embeddings, attention and hidden states)",
        "prediction": f"2 (prediction layer, temperature {distill.get('temperature', 1.0)})",
    }
    return "Task distillation phases: " + ", then ".join(names.get(p, p) for p in phases) + "."


def _settings(facts: _Facts) -> str:
    stages = {
        "teacher": [("Fine-tuning", "finetune")],
        "general": [("General distillation", "general")],
        "intermediate": [("Phase 1", "intermediate")],
        "prediction": [("Phase 1", "intermediate"), ("Phase 2", "prediction")],
    }.get(facts.stage, [])
    if facts.stage == "prediction":
        phases = facts.section("distill").get("phases") or []
        stages = [s for s in stages if s[1] in phases] or stages[-1:]
    lines = [_stage_line(facts, label, key) for label, key in stages if facts.section(key)]
    if not lines:
        return ""
    lines += _extras(facts, stages[-1][0])
    return "## Training settings\n\n" + "\n".join(f"- {line}" for line in lines)


def _stage_line(facts: _Facts, label: str, key: str) -> str:
    s = facts.section(key)
    length = facts.section("task").get("max_seq_length")
    if key == "general":
        length = None  # GD sequences come from the corpus (its own max_seq_length)
    parts = [
        f"max_steps {s['max_steps']}" if s.get("max_steps") else f"{s.get('epochs')} epochs",
        f"batch {s.get('batch_size')}"
        + (f" x {s['grad_accum']}" if s.get("grad_accum", 1) > 1 else ""),
        f"lr {s.get('lr')}",
        f"warm-up {_percent(s.get('warmup_ratio'))}",
        f"precision {_precision(facts, key)}",
        f"max_seq_length {length}" if length else "",
    ]
    if key == "prediction":
        parts.append(f"temperature {facts.section('distill').get('temperature')}")
    return f"{label} (`{key}`): " + ", ".join(p for p in parts if p)


def _precision(facts: _Facts, key: str) -> str:
    """The precision config section `key` trained in: "bf16 (auto)" as its metrics.jsonl
    recorded it (a prediction card's phase 1 line reads the intermediate stage beside it)."""
    stage = "teacher" if key == "finetune" else key
    if stage == facts.stage:
        rows = facts.rows
    elif stage == "intermediate" and facts.stage == "prediction":
        rows = read_metrics(facts.dir.parent.parent / "intermediate" / METRICS_FILE).rows
    else:
        rows = []
    return precision_shown(recorded_precision(rows), facts.section(key).get("precision"))


def _percent(ratio: Any) -> str:
    return f"{ratio:.0%}" if isinstance(ratio, (int, float)) else str(ratio)


def _extras(facts: _Facts, label: str) -> list[str]:
    """The layer map and how far this stage ran (`label` names this stage)."""
    distill = facts.section("distill")
    lines = []
    if facts.stage in ("general", "intermediate", "prediction") and distill.get("layer_map"):
        lines.append(f"Layer map (teacher layer per student layer): {distill['layer_map']}")
    done = facts.done
    if done.get("step") is not None:
        lines.append(f"{label} ran {done['step']} optimizer steps")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _evaluation(facts: _Facts) -> str:
    """The dev results table: this model's results, then one column per ONNX file export.json
    scored (fp32, optimised, int8), with where the numbers come from and the sizes on disk."""
    onnx = {k: v for k, v in (facts.export.get("metrics") or {}).items() if isinstance(v, dict)}
    onnx.pop("pytorch", None)  # the same PyTorch model as the first column
    if not facts.eval and not onnx:
        return ""
    notes = [f"Dev result: {facts.eval_source}." if facts.eval else ""]
    if onnx:
        notes.append("ONNX columns: `tinybert export` (onnx/export.json), on the same dev data.")
    if facts.baseline:
        what = facts.verdict.get("baseline_is")
        notes.append(
            f"Baseline: the dev set's trivial baseline{f', {what}' if what else ''}, scored with "
            "the same metrics."
        )
    note = " ".join(n for n in notes if n)
    table = _eval_table(facts.eval, onnx, facts.baseline)
    return f"## Evaluation\n\n{table}\n\n{note}{_sizes(facts)}"


def _eval_table(
    results: dict[str, float], onnx: dict[str, dict], baseline: dict[str, float]
) -> str:
    """A Markdown table, a row per (split, metric); a Baseline column after the dev result
    where eval_results.json has the trivial baseline."""
    keys = list(results) or list(dict.fromkeys(k for m in onnx.values() for k in _scores(m)))
    columns = (["Dev result"] if results else []) + (["Baseline"] if baseline else [])
    columns += [f"`{name}`" for name in onnx]
    rows = ["| Split | Metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for key in keys:
        split, _, name = key.rpartition("/")
        cells = [_fmt(results[key])] if results else []
        cells += [_fmt(baseline.get(key, "-"))] if baseline else []
        cells += [_fmt(m.get(key, "-")) for m in onnx.values()]
        rows.append(f"| {split or 'dev'} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _sizes(facts: _Facts) -> str:
    """ "\n\nSize on disk: model.safetensors 57.4 MB; model.onnx ..." (empty without files)."""
    sizes = []
    weights = facts.dir / WEIGHTS_FILE
    if weights.is_file():
        sizes.append(f"model.safetensors {_mb(weights.stat().st_size)}")
    files = facts.export.get("files") or {}
    sizes += [
        f"onnx/{n} {_mb(b)}" for n, b in files.items() if n.endswith(".onnx") and isinstance(b, int)
    ]
    return "\n\nSize on disk: " + "; ".join(sizes) + "." if sizes else ""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _speed(facts: _Facts) -> str:
    results = [r for r in facts.speed.get("results") or [] if isinstance(r, dict)]
    if not results:
        return ""
    rows = ["| Backend | Precision | Batch size | Sequences/s | File |", "|---|---|---|---|---|"]
    for r in results:
        rate = r.get("sequences_per_s")
        shown = f"{rate:.1f}" if isinstance(rate, (int, float)) else "-"
        rows.append(
            f"| {r.get('backend')} | {r.get('precision')} | {r.get('batch_size')} | {shown} "
            f"| {r.get('file') or '-'} |"
        )
    s = facts.speed
    line = (
        f"Measured by `tinybert benchmark` on {s.get('machine', 'an unrecorded machine')}, "
        f"{s.get('threads', '?')} threads, {s.get('sequences', '?')} dev sentences "
        f"(mean {s.get('mean_tokens', '?')} tokens, max_seq_length {s.get('max_seq_length', '?')})"
        f", {s.get('measured_at', 'at an unrecorded time')}."
    )
    return "## Speed\n\n" + "\n".join(rows) + "\n\n" + line


def _usage(facts: _Facts) -> str:
    path = facts.dir.as_posix()
    auto = _AUTO_CLASSES.get(facts.pipeline or "", "AutoModel")
    code = [
        f"from transformers import AutoTokenizer, {auto}",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{path}")',
        f'model = {auto}.from_pretrained("{path}")',
        'inputs = tokenizer("A sentence to label.", return_tensors="pt")',
    ]
    if auto == "AutoModel":
        code.append("hidden = model(**inputs).last_hidden_state  # (1, tokens, hidden_size)")
    elif facts.pipeline == "text-classification":
        code.append("label = model.config.id2label[model(**inputs).logits.argmax(-1).item()]")
    elif facts.pipeline == "token-classification":
        code.append("ids = model(**inputs).logits.argmax(-1)[0].tolist()  # one label per token")
        code.append("tags = [model.config.id2label[i] for i in ids]")
    text = "## How to use\n\nWith transformers:\n\n```python\n" + "\n".join(code) + "\n```"
    if facts.pipeline in ("text-classification", "token-classification"):
        cli = f"tinybert predict --model {path} input.tsv"
        if facts.export:
            cli += f"\ntinybert predict --model {path}/onnx input.tsv   # ONNX Runtime"
        text += f"\n\nWith tinybert (JSON lines out, one per input line):\n\n```bash\n{cli}\n```"
    elif facts.stage == "general":
        text += (
            "\n\nAs the start of task distillation: `tinybert task-distill ... "
            f"student.init=checkpoint student.path={path}`."
        )
    return text


_SPEED_LIMIT = (
    "Speed was measured once on one machine; it changes with hardware, threads, batch size and "
    "sentence length."
)
_NO_HEAD = (
    "No task head: the outputs are hidden states. Use it through fine-tuning or task distillation."
)
_PHASE1_HEAD = (
    "Phase 1 trains the embeddings, attention and hidden states only: the task head is "
    "untrained. Use the phase 2 model (student/prediction) for predictions."
)


def _limits(facts: _Facts) -> str:
    task = facts.section("task")
    lines = []
    if is_trivial(facts.verdict):  # first: whatever else is said, this model has not learned
        lines.append(
            f"**Failed: {trivial_sentence('model', facts.verdict)}.** It has not learned the task."
        )
    sample = task.get("max_train_examples")
    if isinstance(sample, int) and facts.stage != "general":
        lines.append(
            f"Trained on a random sample of {sample:,} training rows (task.max_train_examples), "
            "not the whole training split."
        )
    lines += _stage_limits(facts)
    dev_rows = task.get("max_eval_examples")
    if isinstance(dev_rows, int) and facts.eval:
        lines.append(f"Dev metrics use only the first {dev_rows:,} rows of each dev split.")
    if facts.eval:
        picked = " (the split that picked this checkpoint)" if facts.dir.name == "best" else ""
        lines.append(
            f"Dev metrics are on the task's dev split{picked}; there is no test-set score."
        )
    if facts.speed:
        lines.append(_SPEED_LIMIT)
    return "## Limits\n\n" + "\n".join(f"- {line}" for line in lines) if lines else ""


def _stage_limits(facts: _Facts) -> list[str]:
    if facts.stage == "intermediate":
        return [_PHASE1_HEAD]
    if facts.stage != "general":
        return []
    lines = [_NO_HEAD]
    steps = facts.section("general").get("max_steps")
    if steps:
        lines.append(f"General distillation stopped after {steps} steps (general.max_steps).")
    sequences = facts.section("corpus").get("max_sequences")
    if sequences:
        lines.append(f"Only the first {sequences:,} corpus sequences were used.")
    return lines
