"""Shared fixtures: a tiny BERT directory and a tiny SST-2 folder in the official layouts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "bright"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "weak", "grim"]
FILLER = ["the", "movie", "film", "was", "very", "plot", "and", "a", "story", "acting", "is"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the real inputs at {path} (../shared beside the repo)")
    return path


def write_vocab(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    words = (
        SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz.,!")
    )
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return directory


def sst2_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Sentences whose label is decided by one sentiment word, with filler of varied length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        filler = rng.sample(FILLER, rng.randint(1, 8))
        filler.insert(rng.randint(0, len(filler)), word)
        rows.append((" ".join(filler), label))
    return rows


def write_sst2(directory: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.tsv", n_train, 0), ("dev.tsv", n_dev, 1)):
        lines = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in sst2_rows(n, seed)]
        (directory / name).write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture
def sst2_dir(tmp_path: Path) -> Path:
    return write_sst2(tmp_path / "SST-2")


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> Path:
    """A randomly initialised 2-layer, hidden-32 BERT encoder saved as a Hugging Face directory."""
    from tinybert.model import BertConfig, BertModel, save_model

    directory = write_vocab(tmp_path / "tiny-bert")
    n_vocab = len((directory / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=n_vocab, **TINY))
    save_model(model, directory, tokenizer_dir=directory)
    return directory


def corpus_text(n_docs: int, seed: int, wiki: bool = False) -> str:
    """Documents of 1-6 paragraphs of 3-40 vocabulary words, a blank line between documents
    (WikiExtractor's layout; with `wiki`, wrapped in <doc> tags as its raw output is)."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + FILLER
    docs = []
    for d in range(n_docs):
        paragraphs = [
            " ".join(rng.choice(words) for _ in range(rng.randint(3, 40))) + "."
            for _ in range(rng.randint(1, 6))
        ]
        if wiki:
            paragraphs = [f'<doc id="{d}" url="x" title="t{d}">', *paragraphs, "</doc>"]
        docs.append("\n".join(paragraphs))
    return "\n\n".join(docs) + "\n"


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "text" / "corpus.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(corpus_text(40, seed=0))
    return path
