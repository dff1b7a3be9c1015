"""Recipes: set up models, data and objectives for each command, then run the one loop.

finetune:     model dir -> <output_dir>/teacher/{best,final}
task-distill: teacher   -> <output_dir>/student/intermediate/final -> .../prediction/{best,final}
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import DistillConfig, RunConfig, StudentConfig, TaskConfig, TrainConfig
from tinybert.data import (
    TaskSpec,
    collate,
    encode_examples,
    get_task,
    load_tokenizer,
    read_examples,
    tfrecord,
    tokenizer_info,
)
from tinybert.distill import checkpoint as ckpt
from tinybert.distill import distributed
from tinybert.distill.loop import Trainer, TrainResult, autocast, resolve_device
from tinybert.distill.mapping import check_heads, resolve_layer_map
from tinybert.distill.objectives import (
    IntermediateLoss,
    PredictionLoss,
    SupervisedLoss,
    teacher_logits,
)
from tinybert.distill.projection import HiddenProjection
from tinybert.errors import UserError
from tinybert.evaluate import evaluate_splits
from tinybert.model import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_model,
    save_model,
)


@dataclass
class TaskData:
    """A task's tokenised training set and dev split(s)."""

    task: TaskSpec
    train: object  # TaskDataset
    dev: dict[str, object]  # split name -> TaskDataset
    pad_id: int

    def collate_fn(self, dataset) -> Callable[[list[int]], dict[str, torch.Tensor]]:
        return lambda indices: collate([dataset[i] for i in indices], pad_id=self.pad_id)


def task_spec(cfg: TaskConfig) -> TaskSpec:
    return get_task(cfg.name, labels=cfg.labels, regression=cfg.regression)


def load_task_data(
    cfg: TaskConfig,
    tokenizer_dir: str,
    seed: int,
    train: bool = True,
    vocab_size: int | None = None,
) -> TaskData:
    """Read, check and tokenise the task's files with the tokenizer in `tokenizer_dir`.

    `vocab_size` (the model's) is checked against the tokenizer: ids past the embedding table
    would otherwise fail deep inside the model, or silently read the wrong rows.
    """
    task = task_spec(cfg)
    tokenizer = load_tokenizer(tokenizer_dir)
    n_vocab, pad_id = tokenizer_info(tokenizer)
    if vocab_size is not None and n_vocab > vocab_size:
        raise UserError(
            f"the tokenizer in {tokenizer_dir} has {n_vocab} tokens but the model's vocab_size is "
            f"{vocab_size}: tokenizer and model do not belong together"
        )
    data_dir = Path(cfg.data_dir)
    if not data_dir.is_dir():
        raise UserError(f"task.data_dir: folder not found: {data_dir}")

    seed_data = tfrecord.is_tfrecord_dir(data_dir)
    if seed_data and task.is_regression:
        raise UserError(f"{data_dir}: TFRecord data holds int64 label_ids; regression needs TSV")

    def split(file: str, limit: int | None, sample: bool):
        if seed_data:  # the seed's pre-tokenised TFRecord split (train*.tfrecord, dev*.tfrecord)
            data = tfrecord.task_dataset(data_dir, Path(file).stem, len(task.labels), n_vocab)
            if limit is not None and limit < len(data):
                keep = (
                    random.Random(seed).sample(range(len(data)), limit) if sample else range(limit)
                )
                data = data.subset(list(keep))
            return data
        examples, skipped = read_examples(task, data_dir / file, on_error=cfg.on_bad_row)
        if skipped:
            tqdm.write(
                f"{data_dir / file}: skipped {skipped} malformed rows (task.on_bad_row=skip)"
            )
        if limit is not None and limit < len(examples):
            # A seeded random sample, not the first rows: files are often sorted by label or length.
            examples = random.Random(seed).sample(examples, limit) if sample else examples[:limit]
        return encode_examples(tokenizer, examples, task, cfg.max_seq_length)

    train_set = split(task.train_split, cfg.max_train_examples, True) if train else None
    dev = {
        name: split(file, cfg.max_eval_examples, False) for name, file in task.dev_splits.items()
    }
    return TaskData(task=task, train=train_set, dev=dev, pad_id=pad_id)


def main_metric_name(data: TaskData) -> str:
    first = next(iter(data.dev))
    return data.task.main_metric if len(data.dev) == 1 else f"{first}/{data.task.main_metric}"


def make_evaluator(model: nn.Module, data: TaskData, batch_size: int, device: torch.device):
    return lambda: evaluate_splits(model, data.dev, data.task, batch_size, device, data.pad_id)


def check_labels(model: nn.Module, task: TaskSpec, where: str) -> None:
    """A model's label names must be the task's, in the same order (else accuracy is garbage)."""
    cfg = model.config
    expected = 1 if task.is_regression else len(task.labels)
    if cfg.num_labels != expected:
        raise UserError(
            f"{where} has {cfg.num_labels} outputs but task '{task.name}' needs {expected}"
        )
    names = cfg.id2label
    generic = names is None or all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if not task.is_regression and not generic and tuple(names) != tuple(task.labels):
        raise UserError(
            f"{where} labels {list(names)} differ from task '{task.name}' labels "
            f"{list(task.labels)} (order matters); fine-tune a teacher on this task first"
        )


def _head(task: TaskSpec) -> str:
    """The model head a task needs: one label per sequence, or one per token (NER)."""
    return "token" if task.kind == "token" else "sequence"


def _head_args(task: TaskSpec) -> dict:
    if task.is_regression:
        return {"num_labels": 1, "id2label": None}
    return {"num_labels": len(task.labels), "id2label": tuple(task.labels)}


def _report(where: str, report) -> None:
    if report.initialised:
        tqdm.write(
            f"{where}: newly initialised (not in the checkpoint): {', '.join(report.initialised)}"
        )


# ---------------------------------------------------------------------------------------------
# finetune


def run_finetune(cfg: RunConfig) -> TrainResult:
    """Fine-tune `cfg.model` (any HF BERT directory) on the task; best model in teacher/best."""
    if not cfg.model:
        raise UserError("finetune needs model=<Hugging Face BERT directory>")
    dist, device = distributed.setup(cfg.device)
    task = task_spec(cfg.task)
    torch.manual_seed(cfg.seed)
    model, report = load_model(cfg.model, head=_head(task), **_head_args(task))
    _report(cfg.model, report)
    check_labels(model, task, cfg.model)
    data = load_task_data(cfg.task, cfg.model, cfg.seed, vocab_size=model.config.vocab_size)
    model.to(device)
    out_dir = Path(cfg.output_dir) / "teacher"
    trainer = Trainer(
        cfg.finetune,
        model=model,
        loss_fn=SupervisedLoss(model, data.task.is_regression),
        lengths=data.train.lengths,
        collate=data.collate_fn(data.train),
        out_dir=out_dir,
        save_model=lambda m, d: save_model(m, d, tokenizer_dir=cfg.model),
        evaluate=make_evaluator(model, data, cfg.finetune.eval_batch_size, device),
        main_metric=main_metric_name(data),
        device=device,
        seed=cfg.seed,
        desc="finetune",
        dist=dist,
    )
    return fit_or_skip(trainer, out_dir, cfg.resume)


def fit_or_skip(trainer: Trainer, out_dir: Path, resume: str | None) -> TrainResult:
    """With resume=auto, a stage whose final/ is complete is not run again."""
    final = out_dir / "final"
    if resume == "auto" and (final / ckpt.STATE_FILE).is_file():
        state = ckpt.load_state(final)
        trainer.model.load_state_dict(state["model"])
        pos = state["position"]
        tqdm.write(f"{trainer.desc}: already finished ({final}); skipping")
        best = out_dir / "best"
        return TrainResult(
            pos["step"],
            final,
            best if best.is_dir() else None,
            pos["best_metric"],
            pos["best_step"],
            None,
        )
    return trainer.fit(resume=resume)


# ---------------------------------------------------------------------------------------------
# task-distill


def build_student(cfg: StudentConfig, teacher: nn.Module, task: TaskSpec) -> nn.Module:
    """A student initialised as configured: random, from a checkpoint, or from teacher layers."""
    head = _head_args(task)
    if cfg.init == "checkpoint":
        if not cfg.path:
            raise UserError("student.init=checkpoint needs student.path=<saved model directory>")
        student, report = load_model(cfg.path, head=_head(task), **head)
        _report(cfg.path, report)
        return student
    if cfg.init == "teacher_layers":
        return _student_from_teacher_layers(cfg, teacher)
    if task.kind == "token":
        return BertForTokenClassification(student_shape(cfg, teacher.config, **head))
    problem = "regression" if task.is_regression else "single_label_classification"
    return BertForSequenceClassification(
        student_shape(cfg, teacher.config, problem_type=problem, **head)
    )


def student_shape(cfg: StudentConfig, teacher: BertConfig, **head) -> BertConfig:
    """The student's config: its own depth and widths, the teacher's vocabulary and positions."""
    return BertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size,
        pad_token_id=teacher.pad_token_id,
        hidden_act=teacher.hidden_act,
        num_hidden_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        **head,
    )


def _student_from_teacher_layers(cfg: StudentConfig, teacher: nn.Module) -> nn.Module:
    """DistilBERT-style: copy embeddings, the chosen teacher layers, pooler and head."""
    layers = cfg.teacher_layers
    n_teacher = teacher.config.num_hidden_layers
    if not layers or any(not 1 <= i <= n_teacher for i in layers):
        raise UserError(
            f"student.teacher_layers must list teacher layers in 1..{n_teacher} "
            f"(e.g. [2, 4, 6]); got {layers}"
        )
    student = type(teacher)(replace(teacher.config, num_hidden_layers=len(layers)))
    state = teacher.state_dict()
    for k, i in enumerate(layers):
        prefix, target = f"bert.encoder.layer.{i - 1}.", f"bert.encoder.layer.{k}."
        state.update(
            {target + n[len(prefix) :]: v for n, v in list(state.items()) if n.startswith(prefix)}
        )
    own = student.state_dict()
    student.load_state_dict({n: state[n] for n in own})
    return student


def load_teacher(cfg: RunConfig, task: TaskSpec, device: torch.device) -> nn.Module:
    if not cfg.teacher:
        raise UserError("task-distill needs teacher=<fine-tuned teacher directory>")
    teacher, report = load_model(cfg.teacher, head=_head(task))
    if report.initialised:
        raise UserError(
            f"teacher {cfg.teacher} has no trained task head ({', '.join(report.initialised)}); "
            "fine-tune it first: tinybert finetune ..."
        )
    check_labels(teacher, task, f"teacher {cfg.teacher}")
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def run_task_distill(cfg: RunConfig) -> dict[str, TrainResult]:
    """Phase 1 (intermediate layers) then phase 2 (prediction layer), as `distill.phases` says."""
    dist, device = distributed.setup(cfg.device)
    task = task_spec(cfg.task)
    teacher = load_teacher(cfg, task, device)
    data = load_task_data(cfg.task, cfg.teacher, cfg.seed, vocab_size=teacher.config.vocab_size)
    torch.manual_seed(cfg.seed)
    student = build_student(cfg.student, teacher, task).to(device)
    check_labels(student, task, "student")
    out = Path(cfg.output_dir) / "student"
    save = lambda m, d: save_model(m, d, tokenizer_dir=cfg.teacher)  # noqa: E731
    results: dict[str, TrainResult] = {}
    if "intermediate" in cfg.distill.phases:
        results["intermediate"] = _phase_intermediate(
            cfg, teacher, student, data, out, save, device, dist
        )
    if "prediction" in cfg.distill.phases:
        results["prediction"] = _phase_prediction(
            cfg, teacher, student, data, out, save, device, dist
        )
    return results


def intermediate_objective(
    cfg: DistillConfig, student: nn.Module, teacher: nn.Module, device: torch.device
) -> tuple[IntermediateLoss, HiddenProjection]:
    """TD phase 1's (and GD's) loss: the layer map and head counts checked, a fresh projection."""
    n_s, n_t = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    layer_map = resolve_layer_map(n_s, n_t, cfg.layer_map)
    check_heads(
        student.config.num_attention_heads,
        teacher.config.num_attention_heads,
        cfg.attention_weight > 0,
    )
    projection = HiddenProjection(
        student.config.hidden_size, teacher.config.hidden_size, n_s + 1, cfg.shared_projection
    ).to(device)
    return IntermediateLoss(student, teacher, projection, layer_map, cfg), projection


def _phase_intermediate(cfg, teacher, student, data, out, save, device, dist) -> TrainResult:
    loss_fn, projection = intermediate_objective(cfg.distill, student, teacher, device)
    tqdm.write(
        f"phase 1: student layers 1..{len(loss_fn.layer_map)} <- teacher layers {loss_fn.layer_map}"
    )
    trainer = Trainer(
        cfg.intermediate,
        model=student,
        extra=projection,
        loss_fn=loss_fn,
        lengths=data.train.lengths,
        collate=data.collate_fn(data.train),
        out_dir=out / "intermediate",
        save_model=save,
        device=device,
        seed=cfg.seed,
        desc="distill phase 1 (intermediate)",
        dist=dist,
    )
    return fit_or_skip(trainer, out / "intermediate", cfg.resume)


def _phase_prediction(cfg, teacher, student, data, out, save, device, dist) -> TrainResult:
    train_cfg: TrainConfig = cfg.prediction
    collate_train = data.collate_fn(data.train)
    logits = teacher_logits(
        teacher,
        data.train.lengths,
        collate_train,
        train_cfg.eval_batch_size,
        device,
        lambda: autocast(device, train_cfg.precision),
    )
    trainer = Trainer(
        train_cfg,
        model=student,
        loss_fn=PredictionLoss(student, logits, cfg.distill, data.task.is_regression),
        lengths=data.train.lengths,
        collate=collate_train,
        out_dir=out / "prediction",
        save_model=save,
        evaluate=make_evaluator(student, data, train_cfg.eval_batch_size, device),
        main_metric=main_metric_name(data),
        device=device,
        seed=cfg.seed,
        desc="distill phase 2 (prediction)",
        dist=dist,
    )
    return fit_or_skip(trainer, out / "prediction", cfg.resume)


# ---------------------------------------------------------------------------------------------
# evaluate


def run_evaluate(model_dir: str, cfg: RunConfig, precision: str = "fp32") -> dict[str, float]:
    """Evaluate a saved model on every dev split of the task; every example counts."""
    device = resolve_device(cfg.device)
    task = task_spec(cfg.task)
    model, report = load_model(model_dir, head=_head(task))
    if report.initialised:
        raise UserError(f"{model_dir} has no trained task head ({', '.join(report.initialised)})")
    check_labels(model, task, model_dir)
    data = load_task_data(cfg.task, model_dir, cfg.seed, False, model.config.vocab_size)
    model.to(device).eval()
    with torch.no_grad(), autocast(device, precision):
        return evaluate_splits(
            model, data.dev, task, cfg.finetune.eval_batch_size, device, data.pad_id
        )


# ---------------------------------------------------------------------------------------------
# init-model


def run_init_model(cfg: RunConfig, vocab_file: str, out_dir: str, lowercase: bool = True) -> Path:
    """A randomly initialised BERT encoder of shape `cfg.student` with the vocabulary in
    `vocab_file`, saved as a Hugging Face directory: a teacher to fine-tune from scratch where
    no pre-trained model of the language exists."""
    vocab = Path(vocab_file)
    if not vocab.is_file():
        raise UserError(f"--vocab: file not found: {vocab}")
    words = vocab.read_text(encoding="utf-8").splitlines()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}) + "\n")
    load_tokenizer(out)  # checks the vocabulary has [PAD], [UNK], [CLS], [SEP]
    torch.manual_seed(cfg.seed)
    shape = student_shape(cfg.student, BertConfig(vocab_size=len(words)))
    save_model(BertModel(shape), out)
    return out
