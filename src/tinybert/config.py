"""Run configuration: frozen dataclasses loaded from YAML with dotted command-line overrides.

    cfg = load_config(["configs/sst2.yaml"], ["prediction.lr=3e-5", "task.max_seq_length=64"])

Every key is checked when the file is read: an unknown key (a typo), a value of the wrong type or
outside the key's declared range is a `UserError` naming the dotted key, the file it came from and
what is allowed, so nothing is silently ignored and no command starts work on a bad value. Every
numeric key declares its range on its field (`Annotated[int, Range(ge=1)]`); the dataclasses
check it on construction too, so configs built in Python are held to the same rules. A YAML file
may pull in others with `include: [relative/path.yaml, ...]`; later files and then the overrides
win, key by key. The same key twice in one YAML mapping is an error (YAML would keep the last).

The comment above (or beside) each field is its documentation: scripts/gen_docs.py turns the
fields, their defaults, ranges and comments into the configuration reference of the docs site,
and tests/test_docs.py fails if a key has none.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from tinybert.errors import UserError

# auto (the default): bf16 where this machine is fast at it (CPU flags avx512_bf16/amx_bf16, a
# bf16 GPU; a timing probe where the CPU says nothing), else fp32. See train/precision.py.
Precision = Literal["auto", "fp32", "bf16", "fp16"]


# ---------------------------------------------------------------------------------------------
# Declared constraints, attached to fields as `Annotated` metadata. Each has `unmet(value, base)`:
# None when `value` is allowed, else what is required ("an integer >= 1"), for the message.


@dataclass(frozen=True)
class Range:
    """Allowed numbers of a key: `Annotated[int, Range(ge=1)]`. Floats must also be finite."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def unmet(self, value: Any, base: type) -> str | None:
        if base is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)  # nan passes no comparison; inf passes `>= 0`
        ok = ok and (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if ok else self.describe(base)

    def describe(self, base: type) -> str:
        noun = "an integer" if base is int else "a finite number"
        pairs = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        bounds = [(op, x) for op, x in pairs if x is not None]
        if len(bounds) == 2:  # one lower and one upper bound: interval notation
            (low_op, low), (high_op, high) = bounds
            opening, closing = "[" if low_op == ">=" else "(", "]" if high_op == "<=" else ")"
            return f"{noun} in {opening}{low}, {high}{closing}"
        return " ".join([noun, *(f"{op} {x}" for op, x in bounds)])


@dataclass(frozen=True)
class Pattern:
    """Allowed spellings of a string key: the whole value must match `regex`."""

    regex: str
    description: str

    def unmet(self, value: Any, base: type) -> str | None:
        ok = isinstance(value, str) and re.fullmatch(self.regex, value) is not None
        return None if ok else self.description


class ConfigValueError(UserError):
    """A value breaking a declared constraint. `build` re-raises it naming the dotted keys and
    the files they came from; built directly in Python, the message names the class instead."""

    def __init__(self, owner: str, keys: tuple[str, ...], problem: str):
        self.keys, self.problem = keys, problem
        super().__init__(f"{owner}.{keys[0]}: {problem}")


class _Checked:
    """Base of the config dataclasses: construction checks every field's declared constraints,
    then `_check_together` (constraints across fields)."""

    def __post_init__(self) -> None:
        cls: type = type(self)  # as plain `type`: mypy wrongly finds type[_Checked] unhashable
        for name, hint in _field_hints(cls).items():
            problem = _problem(getattr(self, name), hint)
            if problem:
                raise ConfigValueError(type(self).__name__, (name,), problem)
        self._check_together()

    def _check_together(self) -> None:
        pass


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    """Each field's type with its `Annotated` metadata (get_type_hints drops it by default)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _problem(value: Any, hint: Any) -> str | None:
    """Why `value` breaks the constraints declared in `hint`, or None. Types are `_convert`'s job;
    this looks through `X | None` and `tuple[X, ...]` to the `Annotated` constraints."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = next((a for a in members if _convert(value, a)[0]), members[0])
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(hint)[0]
        for v in value:
            unmet = _unmet(v, item)
            if unmet:
                return f"every entry must be {unmet}, got {list(value)!r}"
        return None
    unmet = _unmet(value, hint)
    return f"must be {unmet}, got {value!r}" if unmet else None


def _unmet(value: Any, hint: Any) -> str | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    base = typing.get_args(hint)[0]
    for meta in hint.__metadata__:
        unmet = meta.unmet(value, base) if hasattr(meta, "unmet") else None
        if unmet:
            return unmet
    return None


DEVICE = Pattern(r"auto|cpu|mps|cuda(:[0-9]+)?", "auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps")
# NumPy's limit, so any RNG takes the seed; torch's seed + rank + step then stays in range too.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class TaskConfig(_Checked):
    """Which task, where its files are, and how they are tokenised."""

    # sst2 mnli qnli cola mrpc qqp stsb rte wnli (GLUE), tnews cluener (CLUE), sick-e sick-r
    # (SICK), jsonl csv (your own data); official spellings such as SST-2 work too
    name: str = "sst2"
    # folder holding the task's files (train.tsv, dev.tsv, ...: see the file formats guide); one
    # holding schema.json is read as the seed's TFRecord data (train*/dev*.tfrecord)
    data_dir: str = ""
    labels: tuple[str, ...] | None = None  # jsonl/csv only: class names in index order
    regression: bool = False  # jsonl/csv only: the label is a number
    # Tokens per example incl. [CLS]/[SEP] (at least [CLS] a [SEP] b [SEP]); pairs truncate
    # longest-first, batches pad only to their longest example. More than a model's
    # max_position_embeddings is refused at start (finetune, task-distill, evaluate); augment
    # caps it at its MLM's.
    max_seq_length: Annotated[int, Range(ge=5, le=8192)] = 128
    # train on a seeded random sample of N training rows (demo, quick runs)
    max_train_examples: Annotated[int, Range(ge=1)] | None = None
    max_eval_examples: Annotated[int, Range(ge=1)] | None = None  # first N rows of each dev split
    # raise: a malformed row or unknown label stops with file:line; skip: drop and count it
    # (evaluate's JSON: skipped_rows). Blank lines are always skipped and counted, with a warning.
    on_bad_row: Literal["raise", "skip"] = "raise"
    # The dev metric that picks best/ (null: the task's own: accuracy, acc_and_f1 for MRPC/QQP,
    # mcc for CoLA, pearson for STS-B, entity f1 for CLUENER). One of the task's metrics.
    metric: str | None = None
    # A tokenizer with fewer tokens than the model's embedding rows is refused (a truncated or
    # wrong vocab.txt turns words into [UNK]); true accepts it, e.g. for a table padded to x8.
    # RoBERTa, XLM-R, DeBERTa and ModernBERT models (whose released tables are padded) need not.
    allow_smaller_vocab: bool = False
    # Train on this file (in the task's own format, e.g. `tinybert augment` output) instead of
    # the train split in data_dir; "" = data_dir's. Dev splits still come from data_dir.
    train_file: str = ""


@dataclass(frozen=True)
class CorpusConfig(_Checked):
    """General distillation's data."""

    # a folder made by `tinybert prepare-corpus` (meta.json), or a seed TFRecord folder
    # (schema.json); `tinybert run`: "" = <output_dir>/corpus
    path: str = ""
    # use only the first N sequences (demo, quick runs)
    max_sequences: Annotated[int, Range(ge=1)] | None = None
    # `tinybert run`'s prepare-corpus stage: the raw text (files or globs: plain, WikiExtractor,
    # .gz/.bz2) it packs into corpus.path ("" there = <output_dir>/corpus), tokenised by GD's teacher
    inputs: tuple[str, ...] = ()
    # `tinybert run`'s prepare-corpus stage: tokens per packed sequence
    max_seq_length: Annotated[int, Range(ge=5, le=8192)] = 128


@dataclass(frozen=True)
class TrainConfig(_Checked):
    """One training stage (fine-tuning, TD phase 1 or TD phase 2) of the shared loop."""

    epochs: Annotated[float, Range(gt=0)] = 3.0  # fractional epochs are allowed
    # stop after this many optimizer steps (overrides epochs)
    max_steps: Annotated[int, Range(ge=1)] | None = None
    # examples per micro-batch, summed over all processes under torchrun (the global batch)
    batch_size: Annotated[int, Range(ge=1)] = 32
    grad_accum: Annotated[int, Range(ge=1)] = 1  # micro-batches per optimizer step
    lr: Annotated[float, Range(gt=0)] = 5e-5  # peak learning rate
    # decoupled (AdamW); never on biases and LayerNorm
    weight_decay: Annotated[float, Range(ge=0)] = 0.01
    # linear warm-up over this fraction of steps, then linear decay to 0
    warmup_ratio: Annotated[float, Range(ge=0, le=1)] = 0.1
    max_grad_norm: Annotated[float, Range(ge=0)] = 1.0  # 0 disables clipping
    # auto: bf16 where this machine is fast at it, else fp32 (how it decides: the scale guide);
    # bf16: autocast (GPUs; CPUs with AVX512-BF16 or AMX; ~10x slower on AVX2-only CPUs);
    # fp16: GPU only, dynamic loss scaling, overflowing steps skipped and logged (skipped_steps)
    precision: Precision = "auto"
    # also evaluate every N steps (always at each epoch end); not in TD phase 1
    eval_steps: Annotated[int, Range(ge=1)] | None = None
    # checkpoint every N steps (always at the end)
    save_steps: Annotated[int, Range(ge=1)] | None = None
    # keep the newest N step checkpoints; 0 would delete them all, so resume would restart
    max_checkpoints: Annotated[int, Range(ge=1)] = 2
    log_steps: Annotated[int, Range(ge=1)] = 20  # one metrics.jsonl line every N steps
    # batch examples of similar length together: less padding, still every example, shuffled
    group_by_length: bool = True
    # batch size for evaluation and for caching the teacher's logits (TD phase 2)
    eval_batch_size: Annotated[int, Range(ge=1)] = 128


@dataclass(frozen=True)
class IntermediateConfig(TrainConfig):
    """TD phase 1: the training loop's settings, and the cache of the teacher's outputs."""

    # GB of disk that phase 1 may fill with the teacher's mapped outputs, computed once and read
    # every epoch after (distill/teacher_cache.py); 0 = off. A larger cache is refused with a
    # message, and the teacher then runs at every step
    teacher_cache_gb: Annotated[float, Range(ge=0)] = 4.0


@dataclass(frozen=True)
class StudentConfig(_Checked):
    """How the student is built: its shape, and where its first weights come from."""

    # Where the first weights come from (distill/student.py). auto: checkpoint when path is
    # given, else teacher_layers when the student is as wide as the teacher (same hidden_size,
    # num_attention_heads, intermediate_size), else select. select: weight selection, a subset
    # of the teacher's weights (or of the larger BERT in path); checkpoint: any saved model
    # directory (e.g. a general-distilled TinyBERT); teacher_layers: a DistilBERT-style copy of
    # the teacher's layers `teacher_layers`; random: random weights, only when asked.
    init: Literal["auto", "random", "checkpoint", "teacher_layers", "select"] = "auto"
    # init=checkpoint (or auto): any saved model directory (e.g. a GD student); init=select: a
    # larger BERT to select from instead of the teacher
    path: str | None = None
    # init=teacher_layers: 1-based, e.g. [2, 4, 6]
    teacher_layers: tuple[Annotated[int, Range(ge=1)], ...] | None = None
    # init=select (and auto): which source layers, "map" (student layer i takes the layer phase
    # 1 maps it to: distill.layer_map, else the uniform map) or "first" (layers 1..N)
    select_layers: Literal["map", "first"] = "map"
    # The student's shape, for every init but checkpoint and teacher_layers (its vocabulary and
    # positions come from the teacher): layers,
    num_hidden_layers: Annotated[int, Range(ge=1)] = 4
    hidden_size: Annotated[int, Range(ge=1)] = 312  # hidden width; a multiple of the heads
    num_attention_heads: Annotated[int, Range(ge=1)] = 12  # attention heads
    intermediate_size: Annotated[int, Range(ge=1)] = 1200  # feed-forward width
    # hidden and attention dropout of a newly built student; 1 would drop everything
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1

    def _check_together(self) -> None:
        # Attention splits the hidden vector into equal slices, one per head.
        if self.hidden_size % self.num_attention_heads:
            raise ConfigValueError(
                type(self).__name__,
                ("hidden_size", "num_attention_heads"),
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads} (a cross-field check: each attention head gets "
                f"hidden_size / num_attention_heads dimensions)",
            )


@dataclass(frozen=True)
class DistillConfig(_Checked):
    """Which losses task distillation uses and how they are weighted."""

    # teacher layer (1-based) per student layer; null = uniform ([3, 6, 9, 12] for 4 of 12;
    # round(i * N_teacher / N_student) when not divisible)
    layer_map: tuple[Annotated[int, Range(ge=1)], ...] | None = None
    # weights of the intermediate losses (TD phase 1 and GD); 0 turns one off: attention scores,
    attention_weight: Annotated[float, Range(ge=0)] = 1.0
    hidden_weight: Annotated[float, Range(ge=0)] = 1.0  # hidden states,
    embedding_weight: Annotated[float, Range(ge=0)] = 1.0  # embeddings
    # real_tokens: the intermediate losses average over real tokens only; reference: the
    # original scripts' average over every position, padding included (distillation guide)
    loss_mode: Literal["real_tokens", "reference"] = "real_tokens"
    shared_projection: bool = True  # one W_h for every layer (reference code) or one per layer
    # phase 2's soft cross-entropy temperature: both models' logits are divided by it
    temperature: Annotated[float, Range(gt=0)] = 1.0
    scale_by_t2: bool = False  # multiply phase 2's loss by T^2
    # phase 2 adds this times the loss on the gold labels (cross-entropy; MSE for regression)
    # to the soft cross-entropy; 0 = the paper's phase 2, the teacher's logits only (measured
    # no help on SST-2 2k: BENCHMARKS "Small tasks")
    hard_label_weight: Annotated[float, Range(ge=0)] = 0.0
    # which TD phases task-distill runs, in order: [intermediate], [prediction] or both
    phases: tuple[Literal["intermediate", "prediction"], ...] = ("intermediate", "prediction")

    def _check_together(self) -> None:
        # Phase 2 starts from phase 1's result: the phases run once each, in this order.
        allowed = [("intermediate",), ("prediction",), ("intermediate", "prediction")]
        if tuple(self.phases) not in allowed:
            raise ConfigValueError(
                type(self).__name__,
                ("phases",),
                "must be one of "
                + ", ".join(f"[{', '.join(a)}]" for a in allowed)
                + f"; got [{', '.join(self.phases)}]",
            )


@dataclass(frozen=True)
class AugmentConfig(_Checked):
    """`tinybert augment`: TinyBERT's data augmentation of a task's training split."""

    # a Hugging Face BERT directory with a masked-LM head (BertForMaskedLM, BertForPreTraining);
    # "" = none (every word then uses word-vector neighbours)
    mlm: str = ""
    # GloVe or word2vec text format ("N D" header line), plain or .gz; neighbours by cosine
    word_vectors: str = ""
    # read only the first N vectors (the files are sorted by frequency; the reference reads
    # 100,000); null = all
    max_vectors: Annotated[int, Range(ge=1)] | None = None
    # augmented copies per training example (the reference: 30 for CoLA/MRPC/RTE/STS-B, 10 for
    # MNLI/QQP)
    n: Annotated[int, Range(ge=1)] = 20
    p: Annotated[float, Range(ge=0, le=1)] = 0.4  # chance that a word of a copy is replaced
    k: Annotated[int, Range(ge=1)] = 15  # candidates per word, one drawn uniformly
    # null = the top-level seed; the output is identical for a given seed
    seed: Annotated[int, Range(ge=0, le=MAX_SEED)] | None = None
    # which text fields of a pair task are augmented: a (first), b (second); single-sentence
    # tasks have only a. Every copy replaces words in all of them.
    fields: tuple[Literal["a", "b"], ...] = ("a", "b")
    # drop a copy equal to its original or an earlier copy (as the reference); false always
    # writes n
    dedupe: bool = True
    batch_size: Annotated[int, Range(ge=1)] = 128  # masked sentences per MLM forward pass
    precision: Precision = "auto"  # of the MLM's forward passes (auto: bf16 where faster)
    output: str = ""  # the augmented file; "" = <output_dir>/augmented/<train file name>

    def _check_together(self) -> None:
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ConfigValueError(
                type(self).__name__,
                ("fields",),
                f"must name a, b or both, each once, got {list(self.fields)!r}",
            )


def _no_stages() -> tuple[str, ...]:
    return ()


# `tinybert run`'s stages, in the only order they can run (each reads what an earlier one wrote).
# The stage registry (tinybert/pipeline/commands.py, a layer above) defines them and puts its
# lister here when imported (the command line always imports it); until then run.stages is
# checked only when a run plans it.
stage_names: collections.abc.Callable[[], tuple[str, ...]] = _no_stages


@dataclass(frozen=True)
class PipelineConfig(_Checked):
    """`tinybert run`: which stages run, wired output to input (see tinybert/pipeline/)."""

    # the stages `tinybert run` runs, each at most once, in the order of the command registry
    # (pipeline/commands.py; the configuration reference and `tinybert run --help` list it)
    stages: tuple[str, ...] = (
        "finetune",
        "task-distill",
        "evaluate",
        "export",
        "benchmark",
        "report",
    )
    # general-distill's teacher: "" = `model`, the pre-trained BERT the teacher is fine-tuned
    # from (the paper distils general knowledge from the pre-trained, not the fine-tuned, model)
    general_teacher: str = ""
    # A final student no better than the dev set's trivial baseline (majority class, mean
    # score, no entities) ends the run with exit status 3, after its report; true accepts it
    # (exit status 0, still flagged in the run's last lines, the report and the model card).
    allow_trivial: bool = False
    # A teacher that finetune leaves no better than that baseline stops the run before
    # task-distill with exit status 4 (distilling it is wasted time); true distils it anyway.
    allow_weak_teacher: bool = False

    def _check_together(self) -> None:
        known = stage_names()
        if known and not set(self.stages) <= set(known):
            problem = f"expected a list of one of {', '.join(map(repr, known))}"
            raise ConfigValueError(
                type(self).__name__, ("stages",), f"{problem}, got {list(self.stages)!r}"
            )
        order = [known.index(s) for s in self.stages] if known else list(range(len(self.stages)))
        if not self.stages or order != sorted(set(order)) or len(set(self.stages)) < len(order):
            raise ConfigValueError(
                type(self).__name__,
                ("stages",),
                f"must list stages once each, in this order: {', '.join(known)}; got "
                f"{list(self.stages)!r}",
            )


@dataclass(frozen=True)
class BenchmarkConfig(_Checked):
    """`tinybert benchmark`: inference speed on the task's own dev sentences (speed.json)."""

    batch_sizes: tuple[Annotated[int, Range(ge=1)], ...] = (1, 32)  # the batch sizes timed
    max_sentences: Annotated[int, Range(ge=1)] = 256  # the first N rows of the first dev split
    repeats: Annotated[int, Range(ge=1)] = 2  # timed passes; the fastest counts
    # CPU threads (PyTorch and ONNX Runtime); null = each library's default
    threads: Annotated[int, Range(ge=1)] | None = None


@dataclass(frozen=True)
class CardConfig(_Checked):
    """What model cards (README.md beside every saved model) cannot read from the files."""

    # the Hugging Face hub id of the pre-trained model the teacher was fine-tuned from (e.g.
    # sentence-transformers/all-MiniLM-L6-v2): the cards' base_model; "" = not written (local
    # paths are not hub ids)
    base_model: str = ""


@dataclass(frozen=True)
class Config(_Checked):
    """Everything one `tinybert` command needs. Each command reads the sections it uses."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: str = ""  # finetune: the Hugging Face BERT directory to fine-tune
    # task-distill: the fine-tuned teacher directory (e.g. runs/sst2/teacher/best);
    # general-distill: a pre-trained BERT directory
    teacher: str = ""
    output_dir: str = "runs/out"  # where each stage's folder goes (teacher/, student/, ...)
    # seeds initialisation, dropout, the training-data sample and the batch order
    seed: Annotated[int, Range(ge=0, le=MAX_SEED)] = 42
    # auto (cuda if available), cpu, cuda, cuda:1, mps; only the spelling is checked here
    device: Annotated[str, DEVICE] = "auto"
    # "auto": continue from the newest checkpoint in output_dir and skip finished stages; or a
    # checkpoint path; null: a fresh run
    resume: str | None = None
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    run: PipelineConfig = field(default_factory=PipelineConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    card: CardConfig = field(default_factory=CardConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)  # fine-tuning the teacher
    # task distillation phase 1 (attention, hidden states, embeddings): 10 epochs by default
    intermediate: IntermediateConfig = field(
        default_factory=lambda: IntermediateConfig(epochs=10, lr=5e-5)
    )
    # task distillation phase 2 (the teacher's logits): lr 3e-5 by default
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


@dataclass(frozen=True)
class ConfigKey:
    """One dotted key of the configuration, as `leaf_keys` finds it."""

    key: str  # e.g. "general.lr"
    owner: type  # the section class that declares the field (TrainConfig for general.lr)
    hint: Any  # the field's type, with its Annotated constraints
    default: Any  # its default where it sits: general.lr is general's own, not finetune's


def leaf_keys(defaults: Any = None, prefix: str = "") -> list[ConfigKey]:
    """Every leaf key of the configuration in declaration order (sections walked, not listed),
    with the default of its enclosing object. --help, the docs' reference and the tests that
    cover every key read this one walk."""
    defaults = Config() if defaults is None else defaults
    cls: type = type(defaults)  # as plain `type`, as in _Checked
    hints = _field_hints(cls)
    keys: list[ConfigKey] = []
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            keys += leaf_keys(value, prefix + f.name + ".")
        else:
            keys.append(ConfigKey(prefix + f.name, cls, hints[f.name], value))
    return keys


def load_config(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> Config:
    """Merge YAML files in order, apply `a.b=value` overrides, and validate into a Config."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # dotted key -> where its value came from, for error messages
    for path in paths:
        for key_path, data in _read_with_includes(Path(path), seen=()):
            _merge(merged, data, origin, str(key_path))
    for item in overrides:
        key, value = parse_override(item)
        _merge(merged, _nest(key, value), origin, f"command line '{item}'")
    return build(Config, merged, prefix="", origin=origin)


def parse_override(item: str) -> tuple[str, Any]:
    """`finetune.lr=1e-4` -> ("finetune.lr", 1e-4). The value is read as YAML (lists, null,
    numbers)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"bad override '{item}': write it as key.sub=value, e.g. finetune.lr=2e-5")
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise UserError(f"bad override '{item}': {exc.problem}") from None
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
        data = yaml.load(_read_text(path), Loader=_StrictLoader) or {}
    except DuplicateKeyError as exc:
        raise UserError(f"{path}:{exc.line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            line = exc.problem_mark.line + 1
            raise UserError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
        raise UserError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    if not (isinstance(includes, list) and all(isinstance(i, str) for i in includes)):
        raise UserError(
            f"{path}: include must be a file name or a list of file names, got {includes!r}"
        )
    out: list[tuple[Path, dict]] = []
    for inc in includes:
        out += _read_with_includes(path.parent / inc, seen + (path.resolve(),))
    return out + [(path, data)]


def _read_text(path: Path) -> str:
    """A config file's text; anything but UTF-8 (UTF-16 from an editor, Latin-1) is refused."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        # Python names UTF-16's byte-order mark "invalid start byte"; say what the file is.
        bom = " (it starts with a UTF-16 byte-order mark)" if exc.object[:2] in _UTF16_BOMS else ""
        raise UserError(
            f"{path}: not UTF-8 text{bom} (byte {exc.start} cannot be decoded); config files "
            "must be UTF-8: save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the config file: {exc.strerror}") from None


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """The same key twice in one YAML mapping; `line` is 1-based."""

    def __init__(self, problem: str, line: int):
        super().__init__(problem=problem)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML silently keeps the last, so
    a pasted-in second `lr:` would quietly win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            # Before SafeLoader flattens `<<: *anchor` merges: keys a merge brings in may be
            # overridden in the mapping itself, and that is not a duplicate.
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, collections.abc.Hashable):
                    continue  # SafeLoader itself reports unhashable keys
                line = key_node.start_mark.line + 1
                if key in first:
                    raise DuplicateKeyError(
                        f"duplicate key {key!r} (first on line {first[key]})", line
                    )
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def _nest(dotted: str, value: Any) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _merge(dst: dict, src: dict, origin: dict[str, str], where: str, prefix: str = "") -> None:
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        origin[dotted] = where
        if isinstance(value, dict):
            # Merged key by key even into a new section, so each key records its own origin:
            # a message about a key left at its default must not blame this file.
            if not isinstance(dst.get(key), dict):
                dst[key] = {}
            _merge(dst[key], value, origin, where, dotted + ".")
        else:
            dst[key] = value


def _where(origin: dict[str, str], key: str) -> str:
    """The file (or override) that set `key` or the nearest enclosing mapping."""
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return "defaults"


def build(cls: type, data: Any, prefix: str, origin: dict[str, str], defaults: Any = None) -> Any:
    """Build dataclass `cls` from a nested dict, checking every key and type. Keys the dict
    leaves out take their values from `defaults` (an instance) where given, else the class's:
    a section with its own defaults (e.g. `general`) keeps them when a YAML sets one key."""
    if not isinstance(data, dict):
        key = prefix.rstrip(".")
        raise UserError(f"config key '{key}' (from {_where(origin, key)}) must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _field_hints(cls)
    # str(): YAML keys may be numbers, null or booleans (`1: x`), which sort and join badly.
    unknown = sorted(str(k) for k in data if k not in fields)
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
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key + ".", origin, _section_default(fields[name]))
        else:
            kwargs[name] = _check(value, hint, key, _where(origin, key))
    try:
        # __post_init__ checks each key's declared range (replace runs it too)
        return cls(**kwargs) if defaults is None else dataclasses.replace(defaults, **kwargs)
    except ConfigValueError as exc:
        keys = [prefix + k for k in exc.keys]
        # Exact origins: a key of a cross-field check may have been left at its default.
        named = " and ".join(f"'{k}' (from {origin.get(k, 'defaults')})" for k in keys)
        raise UserError(
            f"config key{'s' if len(keys) > 1 else ''} {named}: {exc.problem}"
        ) from None


def _section_default(f: dataclasses.Field) -> Any:
    """The default instance of a section field (its default_factory's), or None."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


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
    if origin is Annotated:  # the type only; `_problem` checks the constraints
        return _convert(value, args[0])
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
        if not isinstance(value, str):  # a list or mapping: float() would raise TypeError
            return False, None
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return True, float(value)
        except ValueError:
            return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _describe(typing.get_args(hint)[0])
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
