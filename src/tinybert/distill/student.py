"""Teacher and student for distillation: loading the (frozen) teacher and one student builder,
shared by general distillation (bare encoders) and task distillation (models with a head).

    teacher = load_teacher("runs/sst2/teacher/best", "sequence", "task-distill")
    start = resolve_start(cfg.student, teacher.config, cfg.teacher, cfg.distill.layer_map)
    student = build_student(cfg.student, teacher, head="sequence", start=start, **task.head_args)
    start.describe()  # "select from runs/sst2/teacher/best, layers [2, 4, 6] (student.init=auto)"

`student.init` says where the first weights come from; `auto` (the default) resolves to a given
checkpoint (student.path), else the teacher's layers when the student is as wide as the teacher,
else weight selection from the teacher (tinybert.model.select).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from torch import Tensor, nn
from tqdm.auto import tqdm

from tinybert.config import StudentConfig
from tinybert.distill.mapping import resolve_layer_map, uniform_layer_map
from tinybert.errors import UserError
from tinybert.families import FAMILIES
from tinybert.model import (
    AnyBertModel,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_model,
    load_model_config,
    saved_head,
)
from tinybert.model.select import check_selectable, select_weights
from tinybert.model.teachers import HFModel, Teacher, load_any_model

Head = Literal["sequence", "token", "encoder"]
M = TypeVar("M", bound=nn.Module)
# The most positions a student gets: ModernBERT takes 8,192 tokens, but a BERT student with a
# table that long would spend most of its embedding parameters on rows that task data
# (max_seq_length <= 512, BERT's own limit) never reaches.
STUDENT_POSITIONS = 512


def freeze(teacher: M) -> M:
    """The teacher in eval mode (no dropout) with no gradients: it only ever runs forward."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def load_teacher(path: str, head: Head, command: str) -> Teacher:
    """A frozen teacher from a Hugging Face directory of any supported family (model/teachers).
    With a task head it must hold a trained one (fine-tune it first; its labels are checked
    against the task's data, see task_data.load_training_data); head="encoder" takes any
    encoder (general distillation)."""
    if not path:
        raise UserError(f"{command} needs teacher=<Hugging Face model directory>")
    teacher, report = load_any_model(path, head=head)
    assert not isinstance(teacher, BertForMaskedLM)  # head is never "mlm" here
    if isinstance(teacher, BertModel):  # head == "encoder"
        teacher.pooler = None  # GD uses hidden states and attention scores only
    elif report.initialised:
        raise UserError(
            f"teacher {path} has no trained task head ({', '.join(report.initialised)}); "
            "fine-tune it first: tinybert finetune ..."
        )
    return freeze(teacher)


def student_shape(cfg: StudentConfig, teacher: BertConfig, **head: Any) -> BertConfig:
    """The student's config: its own depth and widths, the teacher's vocabulary and positions
    (at most STUDENT_POSITIONS of them)."""
    return BertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=min(teacher.max_position_embeddings, STUDENT_POSITIONS),
        type_vocab_size=teacher.type_vocab_size,
        pad_token_id=teacher.pad_token_id,
        hidden_act=teacher.hidden_act,
        layer_norm_eps=teacher.layer_norm_eps,
        num_hidden_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        **head,
    )


@dataclass(frozen=True)
class Start:
    """Where a student's first weights come from: `student.init` with `auto` resolved."""

    init: Literal["random", "checkpoint", "teacher_layers", "select"]
    asked: str  # student.init as configured (auto, random, ...)
    source: str = ""  # the directory the weights come from ("" for random)
    layers: tuple[int, ...] = ()  # teacher_layers / select: the source layer of each student layer

    def describe(self) -> str:
        """One phrase: "select from runs/x/teacher/best, layers [2, 4, 6] (student.init=auto)"."""
        text = {"random": "random weights", "checkpoint": f"checkpoint {self.source}"}.get(
            self.init, f"{self.init} from {self.source or 'the teacher'}"
        )
        if self.layers:
            text += f", layers {list(self.layers)}"
        if self.init == "random" and self.asked == "auto":  # only so for a non-BERT teacher
            return text + " (student.init=auto: the teacher's blocks are not BERT's)"
        return text + (f" (student.init={self.asked})" if self.asked != self.init else "")

    def to_dict(self) -> dict[str, Any]:
        """What a stage records (Trainer's `init`, saved as init.json): the source path made
        absolute, as stage settings are."""
        source = str(Path(self.source).resolve()) if self.source else ""
        return {
            "init": self.init,
            "asked": self.asked,
            "source": source,
            "layers": list(self.layers),
            "text": self.describe(),
        }


def teacher_record(teacher: Teacher) -> dict[str, str]:
    """What a stage records of its teacher (in init.json, for the report and the model card):
    {"model_type": "roberta", "family": "RoBERTa", "attention": "scores", "text": "..."}."""
    family = teacher.family if isinstance(teacher, HFModel) else FAMILIES["bert"]
    what = {
        "scores": "pre-softmax attention scores (MSE)",
        "probabilities": "attention probabilities (KL): its pre-softmax scores are not exposed",
    }[family.attention]
    return {
        "model_type": family.name,
        "family": family.label,
        "attention": family.attention,
        "text": f"{family.label} teacher; the student learns its {what}",
    }


def bert_weights_refusal(teacher: Teacher) -> str:
    """Why the teacher's weights cannot start a BERT student ("" when they can: BERT, RoBERTa,
    XLM-R, DistilBERT, ELECTRA with embeddings as wide as its hidden states)."""
    return teacher.bert_refusal() if isinstance(teacher, HFModel) else ""


def resolve_start(
    cfg: StudentConfig,
    teacher: BertConfig,
    teacher_path: str = "",
    layer_map: Sequence[int] | None = None,
    refusal: str = "",
) -> Start:
    """Resolve `cfg.init` against the teacher: `auto` becomes checkpoint (student.path given),
    teacher_layers (the student's hidden size, heads and FFN width equal the teacher's) or
    select (any smaller shape). layer_map (distill.layer_map): the teacher layer each student
    layer starts from, as phase 1 maps them; None = uniform (`student.select_layers=map`).
    refusal (bert_weights_refusal): why the teacher's weights cannot start a BERT student;
    then `auto` resolves to random weights and teacher_layers / select fail with it."""
    init = cfg.init
    if refusal and not cfg.path:
        if init in ("teacher_layers", "select"):
            raise UserError(f"student.init={init}: {refusal}")
        if init == "auto":
            return Start("random", init)
    if init == "auto" and not cfg.path:
        same_width = (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (
            teacher.hidden_size,
            teacher.num_attention_heads,
            teacher.intermediate_size,
        )
        # Teacher layers are the selection that keeps every width (the same code builds both);
        # the layers come from the layer map, not student.teacher_layers.
        layers = tuple(_select_layers(cfg, teacher, layer_map))
        check_selectable(teacher, student_shape(cfg, teacher))  # refused now, before any work
        return Start("teacher_layers" if same_width else "select", init, teacher_path, layers)
    if init in ("auto", "checkpoint"):
        if not cfg.path:
            raise UserError("student.init=checkpoint needs student.path=<saved model directory>")
        return Start("checkpoint", cfg.init, cfg.path)
    if init == "teacher_layers":
        return Start("teacher_layers", cfg.init, teacher_path, tuple(cfg.teacher_layers or ()))
    if init == "select":
        source = load_model_config(cfg.path) if cfg.path else teacher
        # distill.layer_map names teacher layers: a student.path model gets the uniform map
        chosen = _select_layers(cfg, source, None if cfg.path else layer_map)
        check_selectable(source, student_shape(cfg, teacher))
        return Start("select", cfg.init, cfg.path or teacher_path, tuple(chosen))
    return Start("random", cfg.init)


def _select_layers(
    cfg: StudentConfig, source: BertConfig, layer_map: Sequence[int] | None
) -> list[int]:
    """The source layer each student layer is selected from: the layer map, or the first N."""
    n_student, n_source = cfg.num_hidden_layers, source.num_hidden_layers
    if n_student > n_source:
        raise UserError(
            f"weight selection can only shrink a model, but the student's num_hidden_layers "
            f"{n_student} is larger than the source's {n_source}; use a student with "
            f"num_hidden_layers <= {n_source}"
        )
    if cfg.select_layers == "first":
        return list(range(1, n_student + 1))
    if layer_map is None:
        return uniform_layer_map(n_student, n_source)
    return resolve_layer_map(n_student, n_source, layer_map)


def build_student(
    cfg: StudentConfig,
    teacher: Teacher,
    head: Head,
    num_labels: int = 2,
    id2label: tuple[str, ...] | None = None,
    start: Start | None = None,
) -> AnyBertModel:
    """A student initialised as `start` (default: `resolve_start(cfg, teacher.config)`) says:
    random, from a checkpoint, from teacher layers or by weight selection. head="encoder" gives
    a bare encoder without pooler (GD: then every parameter gets a gradient, which DDP needs)."""
    start = start or resolve_start(cfg, teacher.config)
    labels = {} if head == "encoder" else {"num_labels": num_labels, "id2label": id2label}
    if start.init == "checkpoint":
        student = _from_checkpoint(cfg, head, labels)
    elif start.init == "teacher_layers" and start.asked == "teacher_layers":
        if head == "encoder":
            raise UserError(
                "general-distill builds the student with student.init=auto, select, random or "
                "checkpoint; teacher_layers is for task distillation"
            )
        student = _from_teacher_layers(cfg, teacher)
    else:
        student = _random(cfg, teacher.config, head, labels)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise UserError(
            f"student vocab_size {student.config.vocab_size} != teacher's "
            f"{teacher.config.vocab_size}; they must share the vocabulary"
        )
    if start.init in ("select", "teacher_layers") and start.asked != "teacher_layers":
        # auto's teacher layers are a selection that keeps every width: one code path
        source, config = _selection_source(cfg, teacher, head)
        new = select_weights(source, config, student, start.layers)
        if new:
            tqdm.write(f"student: newly initialised (not selected): {', '.join(new)}")
    return student


def _selection_source(
    cfg: StudentConfig, teacher: Teacher, head: Head
) -> tuple[dict[str, Tensor], BertConfig]:
    """The tensors weight selection picks from: the teacher's, or those of the model in
    student.path (without the head it lacks, or a head of another kind)."""
    if cfg.init != "select" or not cfg.path:
        if isinstance(teacher, HFModel):
            return teacher.bert_state_dict(), teacher.config
        return teacher.state_dict(), teacher.config
    kind = "encoder" if head == "encoder" else saved_head(cfg.path)
    model, report = load_model(cfg.path, head=kind)
    state = {k: v for k, v in model.state_dict().items() if k not in report.initialised}
    if kind != head:  # a token head does not fit a sequence student, nor the reverse
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return state, model.config


def _from_checkpoint(cfg: StudentConfig, head: Head, labels: dict) -> AnyBertModel:
    assert cfg.path  # resolve_start refuses checkpoint without a path
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
        return _bert_of(head, student_shape(cfg, teacher))
    if head == "token":
        return _bert_of(head, student_shape(cfg, teacher, **labels))
    problem = "regression" if labels["num_labels"] == 1 else "single_label_classification"
    return _bert_of(head, student_shape(cfg, teacher, problem_type=problem, **labels))


def _bert_of(head: str, config: BertConfig) -> AnyBertModel:
    """A randomly initialised tinybert BERT of `config` with `head` (no pooler on an encoder:
    GD gives every parameter a gradient, which DDP needs)."""
    if head == "encoder":
        return BertModel(config, add_pooling_layer=False)
    if head == "token":
        return BertForTokenClassification(config)
    return BertForSequenceClassification(config)


def _from_teacher_layers(cfg: StudentConfig, teacher: Teacher) -> AnyBertModel:
    """DistilBERT-style: copy embeddings, the chosen teacher layers, pooler and head."""
    layers = cfg.teacher_layers
    n_teacher = teacher.config.num_hidden_layers
    if not layers or any(not 1 <= i <= n_teacher for i in layers):
        raise UserError(
            f"student.teacher_layers must list teacher layers in 1..{n_teacher} "
            f"(e.g. [2, 4, 6]); got {layers}"
        )
    config = replace(teacher.config, num_hidden_layers=len(layers))
    if isinstance(teacher, HFModel):  # its weights under BERT names; a head may be missing
        state = teacher.bert_state_dict()
        student: AnyBertModel = _bert_of(teacher.head, config)
    else:
        state = teacher.state_dict()
        student = type(teacher)(config)
    for k, i in enumerate(layers):
        prefix, target = f"bert.encoder.layer.{i - 1}.", f"bert.encoder.layer.{k}."
        state.update(
            {target + n[len(prefix) :]: v for n, v in list(state.items()) if n.startswith(prefix)}
        )
    own = student.state_dict()
    student.load_state_dict({n: state.get(n, v) for n, v in own.items()})
    new = [n for n in own if n not in state]
    if new:
        tqdm.write(f"student: newly initialised (not in the teacher): {', '.join(new)}")
    return student
