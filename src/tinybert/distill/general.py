"""General distillation (GD): a bare student encoder learns a teacher's attention scores, hidden
states and embeddings on a large text corpus, through the same losses and loop as task
distillation phase 1.

    teacher (any HF BERT dir) + corpus (prepare-corpus folder or seed TFRecord folder)
        -> <output_dir>/general/{checkpoint-N, final}

`final/` is a Hugging Face BertModel directory (no pooler: GD never trains one); task
distillation starts from it with `student.init=checkpoint student.path=<output_dir>/general/final`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tinybert.config import RunConfig
from tinybert.data.corpus import open_corpus
from tinybert.distill import distributed
from tinybert.distill.loop import Trainer, TrainResult
from tinybert.distill.recipes import fit_or_skip, intermediate_objective, student_shape
from tinybert.errors import UserError
from tinybert.model import BertModel, load_model, save_model


def load_gd_teacher(path: str, device):
    if not path:
        raise UserError("general-distill needs teacher=<Hugging Face BERT directory>")
    teacher, _ = load_model(path, head="encoder")
    teacher.pooler = None  # GD uses hidden states and attention scores only
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def build_gd_student(cfg: RunConfig, teacher: BertModel) -> BertModel:
    """A bare encoder without pooler: every parameter then gets a gradient (DDP needs that)."""
    s = cfg.student
    if s.init == "checkpoint":
        if not s.path:
            raise UserError("student.init=checkpoint needs student.path=<saved model directory>")
        student, _ = load_model(s.path, head="encoder")
        student.pooler = None
    elif s.init == "random":
        student = BertModel(student_shape(s, teacher.config), add_pooling_layer=False)
    else:
        raise UserError(
            "general-distill builds the student with student.init=random or checkpoint; "
            "teacher_layers is for task distillation"
        )
    if student.config.vocab_size != teacher.config.vocab_size:
        raise UserError(
            f"student vocab_size {student.config.vocab_size} != teacher's "
            f"{teacher.config.vocab_size}; they must share the vocabulary"
        )
    return student


class _Subset:
    """The first `n` sequences of a corpus (corpus.max_sequences)."""

    def __init__(self, corpus, n: int):
        self.corpus, self.lengths = corpus, corpus.lengths[:n]

    def collate(self, indices):
        return self.corpus.collate(indices)


def run_general_distill(cfg: RunConfig) -> TrainResult:
    """Distil the teacher into a fresh (or given) student on the corpus; see module docstring."""
    dist, device = distributed.setup(cfg.device)
    if not cfg.corpus.path:
        raise UserError("general-distill needs corpus.path=<prepared corpus or TFRecord folder>")
    corpus = open_corpus(cfg.corpus.path, cfg.teacher)  # checks the vocabulary
    if cfg.corpus.max_sequences is not None:
        corpus = _Subset(corpus, cfg.corpus.max_sequences)
    teacher = load_gd_teacher(cfg.teacher, device)
    torch.manual_seed(cfg.seed)
    student = build_gd_student(cfg, teacher).to(device)
    loss_fn, projection = intermediate_objective(cfg.distill, student, teacher, device)
    n_s, layer_map = student.config.num_hidden_layers, loss_fn.layer_map
    if dist.is_main:
        tokens = int(np.sum(corpus.lengths))
        tqdm.write(
            f"general distillation: {len(corpus.lengths)} sequences ({tokens} tokens), "
            f"student layers 1..{n_s} <- teacher layers {layer_map}, {dist.world} process(es)"
        )
    out = Path(cfg.output_dir) / "general"
    trainer = Trainer(
        cfg.general,
        model=student,
        extra=projection,
        loss_fn=loss_fn,
        lengths=corpus.lengths,
        collate=corpus.collate,
        out_dir=out,
        save_model=lambda m, d: save_model(m, d, tokenizer_dir=cfg.teacher),
        device=device,
        seed=cfg.seed,
        desc="general distillation",
        dist=dist,
        # Bare student, no pooler: with every loss on, every parameter gets a gradient and DDP
        # can skip its search for unused ones.
        find_unused_parameters=min(
            cfg.distill.attention_weight, cfg.distill.hidden_weight, cfg.distill.embedding_weight
        )
        == 0,
    )
    return fit_or_skip(trainer, out, cfg.resume)
