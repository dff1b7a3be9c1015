"""Run configuration: frozen dataclasses loaded from YAML with dotted command-line overrides.

    cfg = load_run_config(["configs/sst2.yaml"], ["prediction.lr=3e-5", "task.max_seq_length=64"])

Every key is checked when the file is read: an unknown key (a typo) or a value of the wrong type is a
`UserError` naming the dotted key, the file it came from and what is allowed, so nothing is silently
ignored. A YAML file may pull in others with `include: [relative/path.yaml, ...]`; later files and
then the overrides win, key by key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tinybert.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TaskConfig:
    """Which task, where its files are, and how they are tokenised."""

    name: str = "sst2"  # sst2 mnli qnli cola mrpc qqp stsb rte wnli jsonl csv
    data_dir: str = ""  # folder holding the task's official files (train.tsv, dev.tsv, ...)
    labels: tuple[str, ...] | None = None  # class names, only for the generic jsonl/csv tasks
    regression: bool = False  # only for the generic jsonl/csv tasks
    max_seq_length: int = 128
    max_train_examples: int | None = None  # use the first N training rows (demo, quick runs)
    max_eval_examples: int | None = None  # use the first N rows of each dev split
    on_bad_row: Literal["raise", "skip"] = "raise"  # skip: drop malformed rows and count them
    # A data_dir holding schema.json is read as the seed's TFRecord data (train*/dev*.tfrecord).


@dataclass(frozen=True)
class CorpusConfig:
    """General distillation's data."""

    path: str = ""  # a folder made by `tinybert prepare-corpus`, or a seed TFRecord folder
    max_sequences: int | None = None  # use only the first N sequences (demo, quick runs)


@dataclass(frozen=True)
class TrainConfig:
    """One training stage (fine-tuning, TD phase 1 or TD phase 2) of the shared loop."""

    epochs: float = 3.0
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 32  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    weight_decay: float = 0.01  # decoupled (AdamW); never on biases and LayerNorm
    warmup_ratio: float = 0.1  # linear warm-up over this fraction of steps, then linear decay
    max_grad_norm: float = 1.0  # 0 disables clipping
    precision: Precision = "fp32"  # bf16: autocast (CPU and GPU); fp16: GPU only, loss scaling
    eval_steps: int | None = None  # also evaluate every N steps (always at each epoch end)
    save_steps: int | None = None  # checkpoint every N steps (always at the end)
    max_checkpoints: int = 2  # keep the newest N step checkpoints
    log_steps: int = 20
    group_by_length: bool = True  # batch similar lengths together: less padding, same examples
    eval_batch_size: int = 128


@dataclass(frozen=True)
class StudentConfig:
    """How the student is built: its shape, and where its first weights come from."""

    init: Literal["random", "checkpoint", "teacher_layers"] = "random"
    path: str | None = None  # init=checkpoint: any saved model directory (e.g. a GD student)
    teacher_layers: tuple[int, ...] | None = None  # init=teacher_layers: 1-based, e.g. [2, 4, 6]
    num_hidden_layers: int = 4
    hidden_size: int = 312
    num_attention_heads: int = 12
    intermediate_size: int = 1200
    dropout: float = 0.1  # hidden and attention dropout of a newly built student


@dataclass(frozen=True)
class DistillConfig:
    """Which losses task distillation uses and how they are weighted."""

    layer_map: tuple[int, ...] | None = None  # teacher layer per student layer; None = uniform
    attention_weight: float = 1.0
    hidden_weight: float = 1.0
    embedding_weight: float = 1.0
    loss_mode: Literal["real_tokens", "reference"] = "real_tokens"
    shared_projection: bool = True  # one W_h for every layer (reference code) or one per layer
    temperature: float = 1.0
    scale_by_t2: bool = False
    phases: tuple[Literal["intermediate", "prediction"], ...] = ("intermediate", "prediction")


@dataclass(frozen=True)
class RunConfig:
    """Everything one `tinybert` command needs. Each command reads the sections it uses."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: str = ""  # finetune: the Hugging Face BERT directory to fine-tune
    teacher: str = ""  # task-distill / general-distill: the teacher directory
    output_dir: str = "runs/out"
    seed: int = 42
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1 ...
    resume: str | None = None  # "auto" (latest checkpoint in output_dir) or a checkpoint path
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    intermediate: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=5e-5))
    prediction: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=3e-5))
    # General distillation, the paper's/seed's settings: lr 5e-5, 10% warm-up, weight decay 1e-4.
    general: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=3,
            lr=5e-5,
            weight_decay=1e-4,
            batch_size=256,
            group_by_length=False,
            save_steps=1000,
            log_steps=50,
        )
    )


# ---------------------------------------------------------------------------------------------
# Loading: YAML files (with includes) -> one nested dict -> checked dataclasses.


def load_run_config(paths: list[str | Path], overrides: list[str] = ()) -> RunConfig:
    """Merge YAML files in order, apply `a.b=value` overrides, and validate into a RunConfig."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # dotted key -> where its value came from, for error messages
    for path in paths:
        for key_path, data in _read_with_includes(Path(path), seen=()):
            _merge(merged, data, origin, str(key_path))
    for item in overrides:
        key, value = parse_override(item)
        _merge(merged, _nest(key, value), origin, f"command line '{item}'")
    return build(RunConfig, merged, prefix="", origin=origin)


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=1e-4` -> ("train.lr", 1e-4). The value is read as YAML (lists, null, numbers)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"bad override '{item}': write it as key.sub=value, e.g. finetune.lr=2e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _read_with_includes(path: Path, seen: tuple[Path, ...]) -> list[tuple[Path, dict]]:
    """Return [(file, mapping)] for `path` and its includes, includes first (so the file wins)."""
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise UserError(f"config include cycle: {' -> '.join(map(str, seen + (path,)))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    out: list[tuple[Path, dict]] = []
    for inc in includes:
        out += _read_with_includes(path.parent / inc, seen + (path.resolve(),))
    return out + [(path, data)]


def _nest(dotted: str, value: Any) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _merge(dst: dict, src: dict, origin: dict[str, str], where: str, prefix: str = "") -> None:
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origin, where, dotted + ".")
        else:
            dst[key] = value
            origin[dotted] = where


def _where(origin: dict[str, str], key: str) -> str:
    """The file (or override) that set `key` or the nearest enclosing mapping."""
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return "defaults"


def build(cls: type, data: Any, prefix: str, origin: dict[str, str]) -> Any:
    """Build dataclass `cls` from a nested dict, checking every key and type."""
    if not isinstance(data, dict):
        key = prefix.rstrip(".")
        raise UserError(f"config key '{key}' (from {_where(origin, key)}) must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + unknown[0]
        raise UserError(
            f"unknown config key '{key}' (from {_where(origin, key)}); "
            f"allowed under '{prefix.rstrip('.') or 'top level'}': {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key + ".", origin)
        else:
            kwargs[name] = _check(value, hint, key, _where(origin, key))
    return cls(**kwargs)


def _check(value: Any, hint: Any, key: str, where: str) -> Any:
    """Return `value` converted to `hint`, or raise a UserError naming the key."""
    ok, converted = _convert(value, hint)
    if not ok:
        raise UserError(
            f"config key '{key}' (from {where}): expected {_describe(hint)}, got {value!r}"
        )
    return converted


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, out = _convert(value, arg)
            if ok:
                return True, out
        return False, None
    if hint is type(None):
        return value is None, None
    if origin is Literal:
        return value in args, value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, None
        items = [_convert(v, args[0]) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, (int, float)):
            return True, float(value)
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return isinstance(value, str), float(value)
        except ValueError:
            return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-friendly data (tuples become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
