"""Corpus preparation: reading text, packing BERT sequences, shards, and reading them back."""

from __future__ import annotations

import bz2
import gzip
import json
import random

import numpy as np
import pytest

from tinybert.cli import main
from tinybert.data.corpus import (
    CorpusDataset,
    PackingOptions,
    pack_document,
    prepare_corpus,
    read_documents,
)
from tinybert.errors import UserError

from .conftest import corpus_text, write_vocab

CLS, SEP, PAD = 2, 3, 0  # ids in the tiny vocabulary


@pytest.fixture
def vocab_dir(tmp_path):
    return write_vocab(tmp_path / "vocab")


@pytest.mark.parametrize("short_seq_prob", [0.0, 0.3])
def test_pack_document_fits_and_keeps_every_token_in_order(short_seq_prob):
    rng = random.Random(0)
    paragraphs = [list(range(1000 * k, 1000 * k + n)) for k, n in enumerate([5, 70, 3, 200, 9])]
    pairs = list(pack_document(paragraphs, rng, 32, short_seq_prob))
    for a, b in pairs:
        assert len(a) + len(b) <= 29 and len(a) >= 1
    kept = [t for a, b in pairs for t in a + b]
    assert kept == [t for p in paragraphs for t in p]  # every token, in document order
    if short_seq_prob == 0:  # all but the document's last sequence are full
        assert all(len(a) + len(b) == 29 for a, b in pairs[:-1])


def test_pack_document_short_sequences_and_determinism():
    paragraphs = [list(range(n)) for n in [40] * 30]

    def lengths(seed):
        pairs = pack_document(paragraphs, random.Random(seed), 64, short_seq_prob=0.5)
        return [len(a) + len(b) for a, b in pairs]

    assert lengths(1) == lengths(1)
    assert min(lengths(1)) < 40  # some targets were shortened
    assert max(lengths(1)) <= 61


def test_read_documents_plain_gz_bz2_and_wikiextractor(tmp_path):
    text = corpus_text(5, seed=3)
    wiki = corpus_text(5, seed=3, wiki=True)
    (tmp_path / "a.txt").write_text(text)
    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write(text)
    with bz2.open(tmp_path / "a.txt.bz2", "wt") as f:
        f.write(text)
    (tmp_path / "wiki.txt").write_text(wiki.replace("\n\n", "\n"))  # <doc> tags alone split docs
    docs = {
        name: [d for d, _ in read_documents(tmp_path / name)]
        for name in ("a.txt", "a.txt.gz", "a.txt.bz2", "wiki.txt")
    }
    assert len(docs["a.txt"]) == 5
    assert docs["a.txt"] == docs["a.txt.gz"] == docs["a.txt.bz2"] == docs["wiki.txt"]
    assert not any(p.startswith("<doc") for d in docs["wiki.txt"] for p in d)


def test_prepare_corpus_layout_and_rows(tmp_path, vocab_dir, corpus_file):
    out = tmp_path / "prepared"
    stats = prepare_corpus([str(corpus_file)], vocab_dir, out, PackingOptions(max_seq_length=32))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["max_seq_length"] == 32
    assert meta["sequences"] == stats.sequences > 10 and meta["documents"] == 40
    data = CorpusDataset(out, tokenizer_dir=vocab_dir)
    assert len(data) == stats.sequences and data.lengths.max() <= 32
    batch = data.collate(list(range(len(data))))
    ids, mask, types = (batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids"))
    assert ids.shape[1] == data.lengths.max()  # padded to the longest row, not beyond
    for row in range(len(data)):
        n = int(mask[row].sum())
        seps = np.flatnonzero(ids[row, :n] == SEP)
        assert ids[row, 0] == CLS and ids[row, n - 1] == SEP and 1 <= len(seps) <= 2
        assert (ids[row, n:] == PAD).all() and (types[row, n:] == 0).all()
        # segment ids: 0 up to and including the first [SEP], then 1 up to the end
        assert (types[row, : seps[0] + 1] == 0).all() and (types[row, seps[0] + 1 : n] == 1).all()
    assert stats.tokens == int(mask.sum())


def test_prepare_corpus_is_deterministic_and_shards_split_the_same_rows(
    tmp_path, vocab_dir, corpus_file
):
    opts = PackingOptions(max_seq_length=32, seed=7)
    prepare_corpus([str(corpus_file)], vocab_dir, tmp_path / "a", opts)
    prepare_corpus([str(corpus_file)], vocab_dir, tmp_path / "b", opts)
    assert (tmp_path / "a/ids-00000.bin").read_bytes() == (
        tmp_path / "b/ids-00000.bin"
    ).read_bytes()

    sharded = PackingOptions(max_seq_length=32, seed=7, shard_rows=5)
    prepare_corpus([str(corpus_file)], vocab_dir, tmp_path / "c", sharded)
    one, many = CorpusDataset(tmp_path / "a"), CorpusDataset(tmp_path / "c")
    assert len(json.loads((tmp_path / "c/meta.json").read_text())["shards"]) > 2
    rows = list(range(len(one)))[::-1]  # crosses shard boundaries in both directions
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert (one.collate(rows)[key] == many.collate(rows)[key]).all()


def test_cli_prepare_corpus_with_glob(tmp_path, vocab_dir, corpus_file, capsys):
    out = tmp_path / "prepared"
    glob = str(corpus_file.parent / "*.txt")
    args = ["prepare-corpus", glob, f"--tokenizer={vocab_dir}", f"--output={out}"]
    assert main([*args, "--max-seq-length=48"]) == 0
    assert "sequences" in capsys.readouterr().out and (out / "meta.json").is_file()


def test_vocabulary_mismatch_is_a_clear_error(tmp_path, vocab_dir, corpus_file):
    prepare_corpus([str(corpus_file)], vocab_dir, tmp_path / "p", PackingOptions(max_seq_length=32))
    other = tmp_path / "other"
    other.mkdir()
    words = (vocab_dir / "vocab.txt").read_text().split("\n")
    (other / "vocab.txt").write_text("\n".join(words[:5] + ["zebra"] + words[5:]))
    with pytest.raises(UserError, match="another vocabulary.*prepare-corpus"):
        CorpusDataset(tmp_path / "p", tokenizer_dir=other)


@pytest.mark.parametrize(
    "inputs, match",
    [(["nothing/*.txt"], "matches no file"), (["missing.txt"], "matches no file")],
)
def test_bad_inputs_are_clear_errors(tmp_path, vocab_dir, inputs, match, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=match):
        prepare_corpus(inputs, vocab_dir, tmp_path / "out")


def test_truncated_gzip_and_truncated_shard_are_clear_errors(tmp_path, vocab_dir, corpus_file):
    data = gzip.compress(corpus_file.read_bytes())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.txt.gz: cannot read"):
        prepare_corpus([str(tmp_path / "cut.txt.gz")], vocab_dir, tmp_path / "o1")

    prepare_corpus(
        [str(corpus_file)], vocab_dir, tmp_path / "o2", PackingOptions(max_seq_length=32)
    )
    shard = tmp_path / "o2/ids-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(UserError, match="ids-00000.bin: missing or truncated"):
        CorpusDataset(tmp_path / "o2")
    with pytest.raises(UserError, match="not a prepared corpus"):
        CorpusDataset(tmp_path)


def test_empty_input_is_an_error_and_leaves_no_meta(tmp_path, vocab_dir):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="no text found"):
        prepare_corpus([str(tmp_path / "empty.txt")], vocab_dir, tmp_path / "out")
    assert not (tmp_path / "out/meta.json").exists()


def test_pack_document_leaves_room_for_the_templates_specials():
    """RoBERTa's pair "<s> A </s></s> B </s>" adds 4 special tokens, not BERT's 3."""
    rng = random.Random(1)
    paragraphs = [list(range(i * 100, i * 100 + n)) for i, n in enumerate([5, 30, 12, 40, 3])]
    pairs = list(pack_document(paragraphs, rng, 24, 0.0, pair_specials=4))
    assert all(len(a) + len(b) <= 20 for a, b in pairs)
    assert max(len(a) + len(b) for a, b in pairs) == 20  # full rows use all the room
    assert [t for a, b in pairs for t in a + b] == [t for p in paragraphs for t in p]
