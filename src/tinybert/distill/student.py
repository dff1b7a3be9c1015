"""Teacher and student for distillation: one student builder and one teacher-freezing helper,
shared by general distillation (bare encoders) and task distillation (models with a head).

    teacher = freeze(teacher)
    student = build_student(cfg.student, teacher, head="sequence", **task.head_args)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, TypeVar

from torch import nn
from tqdm.auto import tqdm

from tinybert.config import StudentConfig
from tinybert.errors import UserError
from tinybert.model import (
    AnyBertModel,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_model,
)

Head = Literal["sequence", "token", "encoder"]
M = TypeVar("M", bound=nn.Module)


def freeze(teacher: M) -> M:
    """The teacher in eval mode (no dropout) with no gradients: it only ever runs forward."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def student_shape(cfg: StudentConfig, teacher: BertConfig, **head: Any) -> BertConfig:
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


def build_student(
    cfg: StudentConfig,
    teacher: AnyBertModel,
    head: Head,
    num_labels: int = 2,
    id2label: tuple[str, ...] | None = None,
) -> AnyBertModel:
    """A student initialised as `cfg.init` says: random, from a checkpoint, or (with a head)
    from teacher layers. head="encoder" gives a bare encoder without pooler (GD: then every
    parameter gets a gradient, which DDP needs)."""
    labels = {} if head == "encoder" else {"num_labels": num_labels, "id2label": id2label}
    if cfg.init == "checkpoint":
        student = _from_checkpoint(cfg, head, labels)
    elif cfg.init == "teacher_layers":
        if head == "encoder":
            raise UserError(
                "general-distill builds the student with student.init=random or checkpoint; "
                "teacher_layers is for task distillation"
            )
        student = _from_teacher_layers(cfg, teacher)
    else:
        student = _random(cfg, teacher.config, head, labels)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise UserError(
            f"student vocab_size {student.config.vocab_size} != teacher's "
            f"{teacher.config.vocab_size}; they must share the vocabulary"
        )
    return student


def _from_checkpoint(cfg: StudentConfig, head: Head, labels: dict) -> AnyBertModel:
    if not cfg.path:
        raise UserError("student.init=checkpoint needs student.path=<saved model directory>")
    student, report = load_model(cfg.path, head=head, **labels)
    if report.initialised:
        tqdm.write(
            f"{cfg.path}: newly initialised (not in the checkpoint): {', '.join(report.initialised)}"
        )
    if isinstance(student, BertModel):  # head == "encoder"
        student.pooler = None
    return student


def _random(cfg: StudentConfig, teacher: BertConfig, head: Head, labels: dict) -> AnyBertModel:
    if head == "encoder":
        return BertModel(student_shape(cfg, teacher), add_pooling_layer=False)
    if head == "token":
        return BertForTokenClassification(student_shape(cfg, teacher, **labels))
    problem = "regression" if labels["num_labels"] == 1 else "single_label_classification"
    return BertForSequenceClassification(
        student_shape(cfg, teacher, problem_type=problem, **labels)
    )


def _from_teacher_layers(cfg: StudentConfig, teacher: AnyBertModel) -> AnyBertModel:
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
