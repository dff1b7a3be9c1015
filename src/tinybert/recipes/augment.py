"""augment: TinyBERT's data augmentation of a task's training split (data/word_replacement.py).

config -> the task's training file -> word vectors and/or a masked LM (as a plain top-k callable)
-> <augment.output> (default <output_dir>/augmented/<train file name>) + <output>.summary.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tinybert.config import Config
from tinybert.data import tfrecord
from tinybert.data.base import split_source
from tinybert.data.task_data import check_vocab, task_spec, train_file_name, train_path
from tinybert.data.tasks import ExampleStream
from tinybert.data.tokenization import load_tokenizer, tokenizer_info
from tinybert.data.word_replacement import (
    AugmentOptions,
    AugmentSummary,
    MaskedLM,
    MlmTopK,
    augment_file,
    candidate_exclusions,
    summary_file,
)
from tinybert.data.word_vectors import load_word_vectors
from tinybert.errors import UserError
from tinybert.model import BertForMaskedLM, HFModel, load_any_model
from tinybert.paths import check_output_dir
from tinybert.train.distributed import resolve_device
from tinybert.train.precision import autocast, explain_precision, precision_label


@dataclass
class AugmentResult:
    input: Path
    output: Path
    summary_path: Path
    summary: AugmentSummary


def run_augment(cfg: Config, progress: bool = True) -> AugmentResult:
    """Augment the task's training file (task.train_file, else the train split in data_dir)."""
    a = cfg.augment
    task = task_spec(cfg.task)
    if task.kind == "token":
        raise UserError(
            f"task {task.name!r}: its labels are entity spans (character offsets into the text) "
            "that cannot survive replacing words; augment works on sentence (pair) "
            "classification tasks (GLUE, TNEWS, jsonl, csv)"
        )
    if not a.word_vectors and not a.mlm:
        raise UserError(
            "augment needs augment.word_vectors=<GloVe or word2vec text file>, and for the "
            "paper's method also augment.mlm=<BERT directory with a masked-LM head>"
        )
    if not cfg.task.train_file and not cfg.task.data_dir:
        raise UserError("augment needs task.data_dir (the task's files) or task.train_file")
    if not cfg.task.train_file and tfrecord.is_tfrecord_dir(Path(cfg.task.data_dir)):
        raise UserError(
            f"task.data_dir {cfg.task.data_dir} holds TFRecord data (already tokenised); "
            "augment needs the task's text files"
        )
    source = train_path(cfg.task)
    output = (
        Path(a.output)
        if a.output
        else Path(cfg.output_dir) / "augmented" / train_file_name(cfg.task)
    )
    _check_output(cfg, source, output)
    ExampleStream(task, source, cfg.task.on_bad_row)  # a missing input fails before any work

    vectors = load_word_vectors(a.word_vectors, a.max_vectors) if a.word_vectors else None
    mlm = _masked_lm(cfg) if a.mlm else None
    options = AugmentOptions(
        n=a.n,
        p=a.p,
        k=a.k,
        seed=cfg.seed if a.seed is None else a.seed,
        fields=a.fields,
        dedupe=a.dedupe,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = augment_file(
        task, source, output, options, vectors, mlm, cfg.task.on_bad_row, progress=progress
    )
    if summary.rows_in and not sum(summary.words.values()):
        tqdm.write(
            f"note: no words to augment in augment.fields={list(a.fields)} (a single-sentence "
            "task has no field b): every copy equals its original"
        )
    return AugmentResult(source, output, summary_file(output), summary)


def _check_output(cfg: Config, source: Path, output: Path) -> None:
    """The output must not overwrite the input nor any split of the task, nor be a folder."""
    if output.is_dir():
        raise UserError(f"augment.output {output} is a directory; give a file name")
    check_output_dir(output.parent, "augment.output's folder")  # made if missing
    task = task_spec(cfg.task)
    data_dir = Path(cfg.task.data_dir)
    protected = [
        source,
        *(split_source(data_dir / f)[0] for f in (task.train_split, *task.dev_splits.values())),
    ]
    for path in protected:
        if path.exists() and output.exists() and path.resolve() == output.resolve():
            which = "the input file" if path == source else f"the task's file {path}"
            raise UserError(
                f"augment.output {output} would overwrite {which}; write the augmented file "
                "elsewhere (default: <output_dir>/augmented/<train file name>)"
            )


def _masked_lm(cfg: Config) -> MaskedLM:
    """The MLM of augment.mlm on `device`, as the data layer's top-k callable."""
    a = cfg.augment
    device = resolve_device(cfg.device)
    if a.precision == "fp16" and device.type != "cuda":
        raise UserError("augment.precision=fp16 needs a CUDA GPU; use auto, bf16 or fp32")
    model, _ = load_any_model(a.mlm, head="mlm")  # BERT: tinybert's own; others: transformers
    if not isinstance(model, BertForMaskedLM | HFModel):  # (load_any_model's head="mlm" types)
        raise UserError(f"augment.mlm {a.mlm}: not a masked LM")
    precision, why = explain_precision(a.precision, device)  # after the checks: auto may measure
    label = precision_label(precision, a.precision)
    tqdm.write(f"augment: MLM precision {label}" + (f": {why}" if why else ""))
    tokenizer = load_tokenizer(a.mlm)
    n_vocab, pad_id = tokenizer_info(tokenizer)
    check_vocab(n_vocab, model.config.vocab_size, a.mlm, cfg.task.allow_smaller_vocab)
    model.to(device)
    mask_id = tokenizer.specials.mask_id  # [MASK], <mask>: named by tokenizer_config.json
    if mask_id is None:
        raise UserError(
            f"augment.mlm {a.mlm}: its vocabulary ({tokenizer.specials.source}) has no mask "
            f"token {tokenizer.specials.mask} (mask_token)"
        )
    topk = mlm_topk(model, device, precision, mask_id, pad_id, candidate_exclusions(tokenizer))
    max_len = min(cfg.task.max_seq_length, model.config.max_position_embeddings)
    return MaskedLM(tokenizer, topk, max_len=max_len, batch_size=a.batch_size)


def mlm_topk(
    model: BertForMaskedLM | HFModel,
    device: torch.device,
    precision: str,
    mask_id: int,
    pad_id: int,
    excluded: list[int],
) -> MlmTopK:
    """rows (token ids with one [MASK] each) -> (len(rows), k) ids most likely at the [MASK],
    best first, never one of `excluded`. One forward pass per call over the rows padded to the
    longest; tinybert's BERT runs its MLM head on the [MASK] positions only ((B, V) scores, not
    (B, T, V)); another family's model (HFModel) scores every position and the mask's are
    picked. Segment ids are all 0 (a single text)."""
    model.eval()
    vocab_size = model.config.vocab_size
    banned = torch.zeros(vocab_size, dtype=torch.bool)
    banned[[i for i in excluded if i < vocab_size]] = True
    banned = banned.to(device)

    def topk(rows: list[list[int]], k: int) -> np.ndarray:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        keep = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            keep[i, : len(row)] = 1
        at = (ids == mask_id).long().argmax(dim=1)  # each row's one [MASK]
        ids, keep, at = ids.to(device), keep.to(device), at.to(device)
        with torch.inference_mode(), autocast(device, precision):
            rows_at = torch.arange(len(rows), device=device)
            if isinstance(model, BertForMaskedLM):
                hidden = model.bert(ids, keep, torch.zeros_like(ids)).last_hidden_state
                picked = hidden[rows_at, at]  # (B, H)
                scores = model.cls(picked[:, None, :])[:, 0, :].float()  # (B, V)
            else:
                logits = model(ids, keep).logits  # (B, T, V')
                assert logits is not None  # an MLM head always has logits
                scores = logits[rows_at, at, :vocab_size].float()  # (B, V)
            scores.masked_fill_(banned, float("-inf"))
            return torch.topk(scores, min(k, vocab_size), dim=1).indices.cpu().numpy()

    return topk
