"""general-distill (GD): a bare student encoder learns a teacher's attention scores, hidden
states and embeddings on a large text corpus, through the same loss and loop as TD phase 1.

    teacher (any HF BERT dir) + corpus (prepare-corpus folder or seed TFRecord folder)
        -> <output_dir>/general/{checkpoint-N, final}

The student starts as `student.init` says: by default (auto) a selection of the teacher's
weights (tinybert.model.select), or its layers when it is as wide as the teacher.
`final/` is a Hugging Face BertModel directory (no pooler: GD never trains one); task
distillation starts from it with `student.path=<output_dir>/general/final` (init auto or checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tinybert.config import Config
from tinybert.data.corpus import CorpusDataset, TFRecordCorpus, open_corpus
from tinybert.distill.objectives import intermediate_objective
from tinybert.distill.student import (
    bert_weights_refusal,
    build_student,
    load_teacher,
    resolve_start,
    teacher_record,
)
from tinybert.errors import UserError
from tinybert.recipes.common import PHASE1_KEYS, stage_settings, start_settings
from tinybert.train.context import stage_context
from tinybert.train.loop import TrainData, Trainer, TrainResult

STAGE = "general"
CHUNK_BYTES = 16 << 20  # read a prepared corpus's shard files this much at a time to hash them


def run_general_distill(cfg: Config) -> TrainResult:
    """Distil the teacher into a student (built as student.init says) on the corpus; see the
    module docstring."""
    if not cfg.corpus.path:
        raise UserError("general-distill needs corpus.path=<prepared corpus or TFRecord folder>")
    ctx = stage_context(cfg, tokenizer_dir=cfg.teacher)
    ctx.preflight([STAGE])
    corpus = open_corpus(cfg.corpus.path, cfg.teacher)  # checks the vocabulary
    lengths = corpus.lengths
    if cfg.corpus.max_sequences is not None:
        lengths = lengths[: cfg.corpus.max_sequences]  # the first N sequences
    teacher = load_teacher(cfg.teacher, "encoder", "general-distill").to(ctx.device)
    check_corpus_length(cfg.corpus.path, lengths, teacher.config, f"teacher {cfg.teacher}")
    refusal = bert_weights_refusal(teacher)
    start = resolve_start(cfg.student, teacher.config, cfg.teacher, cfg.distill.layer_map, refusal)
    if ctx.dist.is_main:
        tqdm.write(f"teacher: {teacher_record(teacher)['text']}")
        tqdm.write(f"student: {start.describe()}")
    torch.manual_seed(cfg.seed)  # the student's initial weights
    student = build_student(cfg.student, teacher, "encoder", start=start).to(ctx.device)
    check_corpus_length(cfg.corpus.path, lengths, student.config, "the student")
    loss_fn, projection = intermediate_objective(cfg.distill, student, teacher, ctx.device)
    if ctx.dist.is_main:
        n_s, tokens = student.config.num_hidden_layers, int(np.sum(lengths))
        tqdm.write(
            f"general distillation: {len(lengths)} sequences ({tokens} tokens), student layers "
            f"1..{n_s} <- teacher layers {loss_fn.layer_map}, {ctx.dist.world} process(es)"
        )
    d = cfg.distill
    trainer = Trainer(
        cfg.general,
        ctx,
        STAGE,
        model=student,
        extra=projection,
        loss_fn=loss_fn,
        data=TrainData(
            lengths=lengths,
            collate=corpus.collate,
            content=lambda: corpus_content(corpus, len(lengths)),
        ),
        desc="general distillation",
        # Bare student, no pooler: with every loss on, every parameter gets a gradient and DDP
        # can skip its search for unused ones.
        find_unused_parameters=min(d.attention_weight, d.hidden_weight, d.embedding_weight) == 0,
        section="general",
        settings={
            **stage_settings(
                cfg,
                *("teacher", "seed", "corpus.path", "corpus.max_sequences", "student"),
                *PHASE1_KEYS,
            ),
            "student start": start_settings(start),
        },
        init={**start.to_dict(), "teacher": teacher_record(teacher)},
    )
    return trainer.fit()


def check_corpus_length(path: str, lengths: np.ndarray, config: Any, where: str) -> None:
    """The corpus's longest sequence must fit the model's position table (as task data must,
    task_data.check_length): refused at the start, not when the first long row arrives."""
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > config.max_position_embeddings:
        raise UserError(
            f"corpus.path {path}: sequences of up to {longest} tokens are longer than "
            f"{where}'s max_position_embeddings ({config.max_position_embeddings}); prepare the "
            f"corpus again with --max-seq-length {config.max_position_embeddings} or less"
        )


def corpus_content(corpus: CorpusDataset | TFRecordCorpus, rows: int) -> Iterator[Any]:
    """The first `rows` sequences of a corpus as stored, for the resume fingerprint (see
    resume.data_fingerprint): a prepared corpus's shard files read in CHUNK_BYTES pieces (about
    as fast as the disk; BENCHMARKS "Resume: hashing the training data"), a TFRecord corpus's
    arrays (already in memory)."""
    if isinstance(corpus, TFRecordCorpus):
        yield corpus.ids[:rows]
        yield corpus.len_a[:rows]
        return
    for shard in corpus.meta["shards"]:
        take = min(rows, shard["rows"])
        rows -= take
        for name in (shard["ids"], shard["seg"]):
            file = corpus.path / name
            # every row takes the same bytes (files are checked against meta.json on opening)
            left = file.stat().st_size // max(1, shard["rows"]) * take
            with file.open("rb") as f:
                while left > 0:
                    piece = f.read(min(left, CHUNK_BYTES))
                    if not piece:
                        break
                    left -= len(piece)
                    yield piece
        if rows <= 0:
            return
