"""Data augmentation (TinyBERT section 3, Algorithm 1): word splitting, vector neighbours, MLM
candidates, sampling, writers that the task readers read back, the command and task.train_file."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tinybert.cli import main
from tinybert.config import AugmentConfig, Config, TaskConfig, load_config
from tinybert.data import get_task, load_tokenizer, read_examples
from tinybert.data.base import Example, split_source
from tinybert.data.task_data import load_task_data
from tinybert.data.word_replacement import (
    Augmenter,
    AugmentOptions,
    MaskedLM,
    augment_file,
    candidate_exclusions,
    summary_file,
)
from tinybert.data.word_vectors import WordVectors, load_word_vectors
from tinybert.data.words import match_case, split_words
from tinybert.errors import UserError
from tinybert.recipes.augment import run_augment

from .conftest import check_mlm_augment, write_sst2, write_vocab

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE = FIXTURES / "glue"

# Hand-checkable 2-d vectors: cosine order around "good" is great > fine > ok, "bad" opposite.
TINY_GLOVE = """\
good 1.0 0.0
great 0.95 0.1
fine 0.8 0.5
ok 0.6 0.8
bad -1.0 0.05
Good 0.99 0.01
<unk> 0.99 0.0
##ish 0.99 0.02
film 0.0 1.0
movie 0.1 0.99
"""


def write_glove(path: Path, text: str = TINY_GLOVE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def vectors_for(texts: list[str], path: Path, dim: int = 8, seed: int = 0) -> Path:
    """A GloVe file with a random vector for every (lowercased) word of `texts`, plus spares."""
    words = {t[a:b].lower() for t in texts for a, b in split_words(t)}
    words |= {f"spare{i}" for i in range(20)}
    rng = np.random.default_rng(seed)
    lines = [
        w + " " + " ".join(f"{x:.4f}" for x in rng.standard_normal(dim)) for w in sorted(words)
    ]
    return write_glove(path, "\n".join(lines) + "\n")


def texts_of(examples: list[Example]) -> list[str]:
    return [t for ex in examples for t in (ex.text_a, ex.text_b) if t is not None]


def options(**kw) -> AugmentOptions:
    return AugmentOptions(**{"n": 4, "p": 0.5, "k": 3, "seed": 7, **kw})


# --------------------------------------------------------------------------- words and vectors


def test_split_words_is_bert_basic_tokenisation_with_spans():
    text = "It's  Café, 北京欢迎 you!"
    words = [text[a:b] for a, b in split_words(text)]
    assert words == ["It", "'", "s", "Café", ",", "北", "京", "欢", "迎", "you", "!"]


def test_match_case():
    assert match_case("Good", "great") == "Great"
    assert match_case("GOOD", "great") == "GREAT"
    assert match_case("good", "Paris") == "Paris"
    assert match_case("北", "京") == "京"


def test_vector_neighbours_are_cosine_nearest_without_self_specials_or_case_variants(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    assert vectors.dim == 2 and len(vectors) == 10
    good = vectors.lookup("good")
    assert vectors.lookup("GOOD") == good  # lowercased when not found as it is
    assert vectors.lookup("Good") == vectors.index["Good"]  # found as it is
    assert vectors.lookup("nope") is None
    found = vectors.neighbours([good], k=3)[good]
    # "Good" (a case variant), <unk> and ##ish (specials) are nearer but never candidates
    assert [vectors.words[j] for j in found] == ["great", "fine", "ok"]
    film = vectors.lookup("film")
    assert [vectors.words[j] for j in vectors.neighbours([film], 1)[film]] == ["movie"]
    # hand-checked cosine: great (0.95, 0.1) vs fine (0.8, 0.5) from good (1, 0)
    assert 0.95 / np.hypot(0.95, 0.1) > 0.8 / np.hypot(0.8, 0.5)


def test_chinese_characters_get_single_character_candidates(tmp_path):
    glove = "北 1 0\n京 0.9 0.1\n北京 0.99 0.01\n南 0.8 0.2\nnorth 0.98 0.0\n"
    vectors = load_word_vectors(write_glove(tmp_path / "zh.txt", glove))
    row = vectors.lookup("北")
    assert [vectors.words[j] for j in vectors.neighbours([row], 5)[row]] == ["京", "南"]


def test_word2vec_header_and_gzip(tmp_path):
    path = tmp_path / "w2v.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("3 2\ngood 1 0 \ngreat 0.9 0.1 \nbad -1 0 \n")  # word2vec C: trailing space
    vectors = load_word_vectors(path)
    assert vectors.words == ["good", "great", "bad"] and vectors.dim == 2
    assert load_word_vectors(path, max_vectors=2).words == ["good", "great"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("good 1 0\ngreat 0.9\nbad -1 0\n", r"glove\.txt:2: 1 values, but line 1 has 2"),
        (
            "good 1 0\ngreat 0.9 0.1\nbad -1 0 3\nworse -1 0 2\n",
            r"glove\.txt:3: 3 values, but line 1 has 2: vectors of mixed dimensions",
        ),
        ("2 3\ngood 1 0 0\ngreat 0.9 0.1\n", r"glove\.txt:3: 2 values, but the word2vec header"),
        ("good 1 0\ngreat 0.9 zero\n", r"glove\.txt:2: 'zero' is not a number"),
        ("good 1 0\ngreat nan 0\n", r"glove\.txt:2: .*not finite"),
        ("\n\n", r"no word vectors"),
    ],
)
def test_bad_vector_files_name_file_and_line(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_word_vectors(write_glove(tmp_path / "glove.txt", text))


def test_vector_words_with_spaces_are_left_out(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "g.txt", "good 1 0\n. . . 0.5 0.5\n"))
    assert vectors.words == ["good"]


def test_missing_vector_file(tmp_path):
    with pytest.raises(UserError, match="augment.word_vectors .*not found"):
        load_word_vectors(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- sampling


def sst2_examples(n: int = 30) -> list[Example]:
    rng = random.Random(0)
    words = ["good", "great", "fine", "bad", "film", "movie", "the", "a", "very"]
    return [
        Example(" ".join(rng.choices(words, k=rng.randint(1, 7))), None, str(i % 2), f"x:{i}")
        for i in range(n)
    ]


def run(examples, opts, vectors=None, mlm=None) -> tuple[list[Example], Augmenter]:
    augmenter = Augmenter(opts, vectors, mlm)
    return list(augmenter.run(examples)), augmenter


def test_same_seed_same_output_whatever_the_block_size(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    examples = sst2_examples()
    first, _ = run(examples, options(), vectors)
    again, _ = run(examples, options(block_size=1), vectors)
    other, _ = run(examples, options(seed=8), vectors)
    pairs = [(e.text_a, e.label) for e in first]
    assert pairs == [(e.text_a, e.label) for e in again]
    assert pairs != [(e.text_a, e.label) for e in other]


def test_originals_kept_labels_copied_and_words_drawn_from_candidates(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    examples = sst2_examples()
    out, augmenter = run(examples, options(dedupe=False), vectors)
    assert len(out) == len(examples) * 5
    for i, ex in enumerate(examples):
        group = out[i * 5 : i * 5 + 5]
        assert group[0] == ex  # the original first, unchanged
        assert all(c.label == ex.label and c.text_b is None for c in group)
        for copy in group[1:]:
            old, new = ex.text_a.split(), copy.text_a.split()
            assert len(old) == len(new)
            for o, w in zip(old, new, strict=True):
                row = vectors.lookup(o)
                if w != o:  # a replacement is one of the word's k=3 nearest
                    allowed = [vectors.words[j] for j in vectors.neighbours([row], 3)[row]]
                    assert w in allowed
    words = augmenter.summary.words
    assert words["replaced_vectors"] > 0 and words["replaced_mlm"] == 0
    assert words["kept_no_candidates"] > 0  # the, a, very have no vectors
    n_words = sum(len(ex.text_a.split()) for ex in examples) * 4
    assert sum(words.values()) == n_words


def test_p0_copies_are_the_original_and_dedupe_drops_them(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    examples = sst2_examples(5)
    out, augmenter = run(examples, options(p=0.0, dedupe=False), vectors)
    assert len(out) == 25 and all(o.text_a == examples[i // 5].text_a for i, o in enumerate(out))
    assert augmenter.summary.words["kept_not_drawn"] > 0
    out, augmenter = run(examples, options(p=0.0), vectors)
    assert out == examples and augmenter.summary.duplicates_dropped == 20


def test_p1_replaces_every_word_that_has_candidates(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    ex = Example("Good film, the very bad movie", None, "1", "x:1")
    out, augmenter = run([ex], options(p=1.0, dedupe=False, n=6), vectors)
    for copy in out[1:]:
        words = [copy.text_a[a:b] for a, b in split_words(copy.text_a)]
        assert words[0] in ("Great", "Fine", "Ok")  # case kept
        assert words[1] != "film" and words[3:5] == ["the", "very"]
        assert words[2] != "," or vectors.lookup(",") is None
    counts = augmenter.summary.words
    assert counts["kept_not_drawn"] == 0 and counts["kept_no_candidates"] == 6 * 3  # , the very


def test_pair_fields(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    ex = Example("good film", "bad movie", "entailment", "x:1")
    only_b, _ = run([ex], options(p=1.0, fields=("b",)), vectors)
    assert all(c.text_a == "good film" and c.text_b != "bad movie" for c in only_b[1:])
    both, _ = run([ex], options(p=1.0, fields=("a", "b")), vectors)
    assert all(c.text_a != "good film" and c.text_b != "bad movie" for c in both[1:])


# --------------------------------------------------------------------------- MLM candidates


class FakeMLM:
    """Answers every masked row with fixed ids; records what it was asked."""

    def __init__(self, tokenizer, answer: list[str]):
        self.answer = [tokenizer.token_to_id(t) for t in answer]
        self.calls: list[list[list[int]]] = []

    def __call__(self, rows: list[list[int]], k: int) -> np.ndarray:
        self.calls.append(rows)
        return np.array([(self.answer * k)[:k] for _ in rows])


def test_mlm_candidates_for_single_piece_words_and_vectors_for_the_rest(tmp_path):
    tok = load_tokenizer(write_vocab(tmp_path / "vocab"))
    fake = FakeMLM(tok, ["good", "film", "great", "movie", "bad"])
    mlm = MaskedLM(tok, fake, max_len=6, batch_size=2)
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt", TINY_GLOVE + "zzz 0.5 0.5\n"))
    ex = Example("Good zzz film was very very good", None, "1", "x:1")  # zzz: several pieces
    out, augmenter = run([ex], options(p=1.0, k=2, n=3, dedupe=False), vectors, mlm)
    mask, cls, sep = (tok.token_to_id(t) for t in ("[MASK]", "[CLS]", "[SEP]"))
    rows = [row for call in fake.calls for row in call]
    assert all(len(call) <= 2 for call in fake.calls)  # batch_size
    assert [len(r) for r in rows] == sorted(len(r) for r in rows)  # shortest first
    assert all(r.count(mask) == 1 and r[0] == cls and r[-1] == sep for r in rows)
    assert all(len(r) <= 6 for r in rows)  # cut to a window around the [MASK]
    # 7 words, zzz multi-piece -> 6 masked sentences, "very very" twice but different rows
    assert augmenter.summary.mlm_sentences == 6
    words = [[c.text_a[a:b] for a, b in split_words(c.text_a)] for c in out[1:]]
    for w in words:
        assert w[0] in ("Film", "Great")  # "good" itself is left out; case kept
        assert w[1] in ("ok", "fine")  # zzz: nearest vectors (0.5, 0.5): fine, ok
        assert w[2] in ("good", "great")  # film: not itself
    counts = augmenter.summary.words
    assert counts["replaced_mlm"] == 3 * 6 and counts["replaced_vectors"] == 3


def test_candidate_exclusions_are_specials_and_pieces(tmp_path):
    directory = write_vocab(tmp_path / "vocab")
    with open(directory / "vocab.txt", "a") as f:
        f.write("##ing\n[unused0]\n")
    tok = load_tokenizer(directory)
    excluded = {tok.id_to_token(i) for i in candidate_exclusions(tok)}
    assert excluded == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##ing", "[unused0]"}


# --------------------------------------------------------------------------- files


def tnews_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tnews"
    directory.mkdir()
    rows = [
        {"label": "102", "label_desc": "news_entertainment", "sentence": "北京电影节开幕", "keywords": "电影"},
        {"label": "103", "label_desc": "news_sports", "sentence": "中国队赢了比赛", "keywords": ""},
    ]  # fmt: skip
    (directory / "train.json").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    return directory


ROUND_TRIPS = [
    ("sst2", None, lambda tmp: GLUE / "SST-2" / "train.tsv"),
    ("cola", None, lambda tmp: GLUE / "CoLA" / "train.tsv"),
    ("qnli", None, lambda tmp: GLUE / "QNLI" / "train.tsv"),
    ("mrpc", None, lambda tmp: GLUE / "MRPC" / "train.tsv"),
    ("mnli", None, lambda tmp: GLUE / "MNLI" / "train.tsv"),
    ("qqp", None, lambda tmp: GLUE / "QQP" / "train.tsv"),
    ("stsb", None, lambda tmp: GLUE / "STS-B" / "train.tsv"),
    ("rte", None, lambda tmp: GLUE / "RTE" / "train.tsv"),
    ("wnli", None, lambda tmp: GLUE / "WNLI" / "train.tsv"),
    ("jsonl", ["negative", "positive"], lambda tmp: FIXTURES / "data/jsonl/train.jsonl"),
    ("csv", ["0", "1"], lambda tmp: FIXTURES / "data/csv/train.csv"),
    ("tnews", None, lambda tmp: tnews_dir(tmp) / "train.json"),
    ("sick-e", None, lambda tmp: FIXTURES / "sick" / "SICK.txt#TRAIN"),
    ("sick-r", None, lambda tmp: FIXTURES / "sick" / "SICK.txt#TRAIN"),
]


@pytest.mark.parametrize(("name", "labels", "source"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_augmented_file_reads_back_with_the_tasks_own_reader(tmp_path, name, labels, source):
    task = get_task(name, labels=labels)
    src = source(tmp_path)
    originals, _ = read_examples(task, src)
    vectors = load_word_vectors(vectors_for(texts_of(originals), tmp_path / "v.txt"))
    out = tmp_path / "out" / split_source(src)[0].name  # SICK.txt#TRAIN -> SICK.txt
    out.parent.mkdir()
    opts = options(p=0.6, n=3, dedupe=False)
    summary = augment_file(task, src, out, opts, vectors, None, progress=False)
    back, skipped = read_examples(task, out)
    assert skipped == 0 and len(back) == summary.rows_out == 4 * len(originals)
    assert summary.rows_in == len(originals) and summary.copies == 3 * len(originals)
    for i, ex in enumerate(originals):
        group = back[4 * i : 4 * i + 4]
        assert (group[0].text_a, group[0].text_b, group[0].label) == (
            ex.text_a,
            ex.text_b,
            ex.label,
        )
        assert all(c.label == ex.label and (c.text_b is None) == (ex.text_b is None) for c in group)
    changed = sum(c.text_a != back[4 * (j // 4)].text_a for j, c in enumerate(back))
    assert changed > 0
    assert summary.words["replaced_vectors"] > 0
    report = json.loads(summary_file(out).read_text())
    assert report["rows_out"] == summary.rows_out and report["words"] == summary.words
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".summary.json"]


def test_augmented_output_is_the_same_file_for_the_same_seed(tmp_path):
    src = GLUE / "QNLI" / "train.tsv"
    originals, _ = read_examples(get_task("qnli"), src)
    vectors = load_word_vectors(vectors_for(texts_of(originals), tmp_path / "v.txt"))
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    for out in (a, b):
        augment_file(get_task("qnli"), src, out, options(), vectors, None, progress=False)
    assert a.read_bytes() == b.read_bytes()


def test_cluener_and_overwriting_the_input_are_refused(tmp_path):
    vectors = load_word_vectors(write_glove(tmp_path / "glove.txt"))
    with pytest.raises(UserError, match="entity spans"):
        augment_file(get_task("cluener"), tmp_path / "x.json", tmp_path / "y.json", options(),
                     vectors, None)  # fmt: skip
    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\ngood film\t1\n")
    with pytest.raises(UserError, match="is the input file"):
        augment_file(get_task("sst2"), src, src, options(), vectors, None)
    assert src.read_text() == "sentence\tlabel\ngood film\t1\n"


# --------------------------------------------------------------------------- config


def test_augment_config_defaults_and_fields():
    cfg = Config().augment
    assert (cfg.n, cfg.p, cfg.k, cfg.fields, cfg.batch_size) == (20, 0.4, 15, ("a", "b"), 128)
    assert cfg.seed is None and cfg.mlm == "" and cfg.output == ""
    for bad in ("augment.fields=[]", "augment.fields=[a, a]", "augment.fields=[c]"):
        with pytest.raises(UserError, match="augment.fields"):
            load_config([], [bad])
    for bad, message in (("augment.p=1.5", r"in \[0, 1\]"), ("augment.k=0", ">= 1")):
        with pytest.raises(UserError, match=message):
            load_config([], [bad])
    assert AugmentConfig(fields=("b",)).fields == ("b",)


# --------------------------------------------------------------------------- command, train_file


def test_augment_command_then_finetune_on_the_train_file(tmp_path, tiny_bert_dir, capsys):
    data = write_sst2(tmp_path / "SST-2", n_train=12, n_dev=4)
    originals, _ = read_examples(get_task("sst2"), data / "train.tsv")
    glove = vectors_for(texts_of(originals), tmp_path / "glove.txt")
    out_dir = tmp_path / "run"
    common = [f"task.data_dir={data}", f"output_dir={out_dir}", "task.max_seq_length=32"]
    code = main(["augment", *common, f"augment.word_vectors={glove}", "augment.n=2"])
    assert code == 0
    printed = capsys.readouterr().out
    augmented = out_dir / "augmented" / "train.tsv"
    report = json.loads((out_dir / "augmented" / "train.tsv.summary.json").read_text())
    assert f"task.train_file={augmented}" in printed and "12 rows in" in printed
    assert report["rows_in"] == 12 and report["mlm"] is False
    cfg = TaskConfig(data_dir=str(data), train_file=str(augmented), max_seq_length=32)
    loaded = load_task_data(cfg, tiny_bert_dir, seed=0)
    assert len(loaded.train_set()) == report["rows_out"] > 12
    assert len(loaded.dev["dev"]) == 4  # dev still from data_dir
    code = main(
        ["finetune", *common, f"model={tiny_bert_dir}", f"task.train_file={augmented}",
         "finetune.max_steps=2", "finetune.batch_size=8"]
    )  # fmt: skip
    assert code == 0
    config = (out_dir / "teacher" / "config.yaml").read_text()
    assert f"train_file: {augmented}" in config
    # the output must not overwrite the input: default output named as the train file
    code = main(
        ["augment", *common, f"augment.word_vectors={glove}", f"augment.output={data}/train.tsv"]
    )
    assert code == 2 and "would overwrite the input file" in capsys.readouterr().err


def test_augment_command_refusals(tmp_path, sst2_dir, tiny_bert_dir, capsys):
    glove = write_glove(tmp_path / "glove.txt", "good 1 0\nbad 0 1 2\n")
    base = ["augment", f"task.data_dir={sst2_dir}", f"output_dir={tmp_path / 'run'}"]
    assert main(base) == 2
    assert "augment needs augment.word_vectors" in capsys.readouterr().err
    assert main([*base, f"augment.word_vectors={glove}"]) == 2
    err = capsys.readouterr().err
    assert f"{glove}:2: 3 values, but line 1 has 2" in err and err.count("\n") == 1
    assert main([*base, "task.name=cluener", f"augment.word_vectors={glove}"]) == 2
    assert "entity spans" in capsys.readouterr().err
    # a model directory without an MLM head: the loader names the missing tensors
    assert main([*base, f"augment.mlm={tiny_bert_dir}", "device=cpu"]) == 2
    assert "cls.predictions" in capsys.readouterr().err
    assert not (tmp_path / "run" / "augmented" / "train.tsv").exists()


# --------------------------------------------------------------------------- a real (tiny) MLM


def write_tiny_hf_mlm(directory: Path) -> Path:
    import transformers  # a dev dependency: missing, the test fails rather than skips

    write_vocab(directory)
    n_vocab = len((directory / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=n_vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    transformers.BertForMaskedLM(config).save_pretrained(directory)
    return directory


def test_mlm_topk_matches_transformers_and_the_command_uses_it(tmp_path, capsys):
    from tinybert.model import load_model

    directory = write_tiny_hf_mlm(tmp_path / "mlm")
    tok = load_tokenizer(directory)
    assert tok.specials.mask_id == tok.token_to_id("[MASK]") and tok.specials.pad_id == 0
    model, _ = load_model(directory, head="mlm")
    report, run_dir = check_mlm_augment(directory, model, tok, tmp_path, capsys)
    assert report["mlm_sentences"] > 0 and report["words"]["replaced_vectors"] == 0
    back, _ = read_examples(get_task("sst2"), run_dir / "augmented" / "train.tsv")
    assert len(back) == report["rows_out"]


def test_word_vectors_built_directly():
    vectors = WordVectors(["a", "b", "c"], np.array([[1, 0], [0, 0], [0.9, 0.1]], np.float32))
    found = vectors.neighbours([0, 1], 5)
    assert found[0].tolist() == [2] and found[1].tolist() == []  # a zero vector: none


def test_train_file_is_text_so_a_tfrecord_data_dir_is_refused(tmp_path, tiny_bert_dir):
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    (seed_dir / "schema.json").write_text("{}")
    cfg = TaskConfig(data_dir=str(seed_dir), train_file=str(tmp_path / "train.tsv"))
    with pytest.raises(UserError, match="task.train_file=.*TFRecord data"):
        load_task_data(cfg, tiny_bert_dir, seed=0)
    with pytest.raises(UserError, match="TFRecord data .*augment needs the task's text files"):
        run_augment(
            Config(task=TaskConfig(data_dir=str(seed_dir)), augment=AugmentConfig(word_vectors="x"))
        )
