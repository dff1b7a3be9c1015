"""init-model: a randomly initialised BERT with a given vocabulary, saved as a Hugging Face
directory: a teacher to fine-tune from scratch where no pre-trained model of the language
exists (e.g. Chinese on these machines)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tinybert.config import Config
from tinybert.data import load_tokenizer, tokenizer_info
from tinybert.distill.student import student_shape
from tinybert.errors import UserError
from tinybert.model import BertConfig, BertModel, save_model
from tinybert.paths import build_dir


def run_init_model(cfg: Config, vocab_file: str, out_dir: str, lowercase: bool = True) -> Path:
    """A random BERT encoder of shape `cfg.student` with the vocabulary in `vocab_file`, written
    to the new folder `out_dir`: a non-empty one is refused (it may hold a model), and the model
    is built in a hidden sibling renamed at the end, so a bad vocabulary leaves nothing behind."""
    vocab = Path(vocab_file)
    if not vocab.is_file():
        raise UserError(f"--vocab: file not found: {vocab}")
    words = vocab.read_text(encoding="utf-8").splitlines()
    out = Path(out_dir)
    build_dir(out, lambda tmp: _write(cfg, words, lowercase, tmp), "--output")
    return out


def _write(cfg: Config, words: list[str], lowercase: bool, folder: Path) -> None:
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}) + "\n")
    # Checks the vocabulary has [PAD], [UNK], [CLS], [SEP]; the table gets a row per id.
    n_vocab, _ = tokenizer_info(load_tokenizer(folder))
    torch.manual_seed(cfg.seed)
    shape = student_shape(cfg.student, BertConfig(vocab_size=n_vocab))
    save_model(BertModel(shape), folder)
