"""Tokenizer loading (tokenizer.json or vocab.txt) and encoding into a TaskDataset."""

import json
import shutil
from pathlib import Path

import pytest

from tinybert.data import (
    Example,
    encode_examples,
    encode_texts,
    get_task,
    load_tokenizer,
    read_examples,
    tokenizer_info,
)
from tinybert.errors import UserError

TINY = Path(__file__).resolve().parent / "fixtures" / "data" / "tiny_vocab"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SHARED_GLUE = SHARED / "data" / "glue"
VOCAB = (TINY / "vocab.txt").read_text().split()
ID = {tok: i for i, tok in enumerate(VOCAB)}


def ids(*tokens: str) -> list[int]:
    return [ID[t] for t in tokens]


def ex(a: str, b: str | None = None, label="1") -> Example:
    return Example(a, b, label, "test:1")


def _need_shared() -> None:
    if not (MINILM / "tokenizer.json").is_file() or not SHARED_GLUE.is_dir():
        pytest.skip(f"real model/data not found under {SHARED}")


def _vocab_only_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(src / name, dst / name)
    return dst


# --------------------------------------------------------------------------- loading


def test_vocab_tokenizer_is_bert_shaped():
    tok = load_tokenizer(TINY)
    single = tok.encode("The cat sat")
    assert single.ids == ids("[CLS]", "the", "cat", "sat", "[SEP]")
    assert single.type_ids == [0] * 5
    pair = tok.encode("Playing cats", "unhappy!")
    assert pair.ids == ids("[CLS]", "play", "##ing", "cats", "[SEP]", "un", "##happy", "!", "[SEP]")
    assert pair.type_ids == [0] * 5 + [1] * 4
    assert tok.encode("a [MASK] cat").ids == ids("[CLS]", "a", "[MASK]", "cat", "[SEP]")
    assert tokenizer_info(tok) == (len(VOCAB), 0)


def test_do_lower_case_false_is_honoured(tmp_path):
    cased = _vocab_only_copy(TINY, tmp_path / "cased")
    (cased / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    tok = load_tokenizer(cased)
    assert tok.encode("Hello hello").ids == ids("[CLS]", "[UNK]", "hello", "[SEP]")
    (cased / "tokenizer_config.json").unlink()  # no config: BERT's default, lowercase
    assert load_tokenizer(cased).encode("Hello").ids == ids("[CLS]", "hello", "[SEP]")


def test_tokenizer_json_padding_and_truncation_are_disabled(tmp_path):
    reference = load_tokenizer(TINY)
    saved = load_tokenizer(TINY)
    saved.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    saved.enable_truncation(4)
    (tmp_path / "model").mkdir()
    saved.save(str(tmp_path / "model" / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "model")
    assert tok.padding is None and tok.truncation is None
    text = ("the cat sat on the mat", "hello world")
    assert tok.encode(*text).ids == reference.encode(*text).ids


def test_missing_or_non_bert_tokenizer(tmp_path):
    with pytest.raises(UserError, match="expected tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(
        UserError, match=r"vocab.txt: not a BERT WordPiece vocabulary: missing \[PAD\]"
    ):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    "config, types",
    [
        ({"model_type": "bert"}, [0] * 5 + [1] * 4),
        ({"model_type": "electra", "type_vocab_size": 2}, [0] * 5 + [1] * 4),
        ({"model_type": "distilbert"}, [0] * 9),  # DistilBERT reads no segment ids
        ({"model_type": "bert", "type_vocab_size": 1}, [0] * 9),
    ],
)
def test_vocab_txt_type_ids_follow_config_json(tmp_path, config, types):
    directory = _vocab_only_copy(TINY, tmp_path / "model")
    (directory / "config.json").write_text(json.dumps(config))
    tok = load_tokenizer(directory)
    pair = tok.encode("Playing cats", "unhappy!")
    assert pair.ids == ids("[CLS]", "play", "##ing", "cats", "[SEP]", "un", "##happy", "!", "[SEP]")
    assert pair.type_ids == types and tok.specials.token_types is (1 in types)
    data = encode_texts(tok, [("Playing cats", "unhappy!")], 16)
    assert data[0]["token_type_ids"] == types


def test_vocab_txt_special_names_from_tokenizer_config(tmp_path):
    """An ELECTRA-style vocab.txt whose tokenizer_config.json names other special tokens."""
    directory = tmp_path / "model"
    directory.mkdir()
    words = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "the", "cat"]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    names = {"cls_token": "<cls>", "sep_token": "<sep>", "pad_token": "<pad>",
             "unk_token": "<unk>", "mask_token": "<mask>"}  # fmt: skip
    (directory / "tokenizer_config.json").write_text(json.dumps(names))
    tok = load_tokenizer(directory)
    assert tok.encode("the dog", "cat").ids == [2, 5, 1, 3, 6, 3]
    assert tok.encode("the <mask>").ids == [2, 5, 4, 3]  # a special token in the text
    assert tokenizer_info(tok) == (7, 0) and tok.specials.mask_id == 4
    (directory / "tokenizer_config.json").write_text(json.dumps({**names, "sep_token": "</s>"}))
    with pytest.raises(
        UserError, match=r"vocab.txt: not a BERT WordPiece vocabulary: missing </s>"
    ):
        load_tokenizer(directory)


# --------------------------------------------------------------------------- encoding


def test_encode_examples_maps_labels_and_keeps_lengths():
    task = get_task("jsonl", labels=["neg", "pos"])
    examples = [ex("the cat", label="pos"), ex("a dog", "it ran away", label="neg")]
    data = encode_examples(load_tokenizer(TINY), examples, task, max_seq_length=16)
    assert len(data) == 2 and data.lengths == [4, 8]
    assert data[0] == {
        "input_ids": ids("[CLS]", "the", "cat", "[SEP]"),
        "token_type_ids": [0, 0, 0, 0],
        "label": 1,
        "index": 0,
    }
    assert data[1]["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1] and data[1]["label"] == 0


def test_pairs_truncate_longest_first():
    tok = load_tokenizer(TINY)
    long_a = "the cat sat on the mat and the dog ran away"  # 11 tokens
    data = encode_examples(tok, [ex(long_a, "short pair")], get_task("sst2"), max_seq_length=10)
    # 10 - 3 specials = 7 tokens: the longer segment loses tokens until the shorter one is longer
    assert data[0]["input_ids"] == ids(
        "[CLS]", "the", "cat", "sat", "on", "the", "[SEP]", "short", "pair", "[SEP]"
    )
    assert data.lengths == [10]
    assert tok.truncation is None  # the tokenizer's own settings are left as they were


def test_regression_labels_are_floats():
    task = get_task("stsb")
    data = encode_examples(load_tokenizer(TINY), [ex("a", "b", label=3.5)], task, 8)
    assert data[0]["label"] == 3.5 and isinstance(data[0]["label"], float)


def test_bad_max_seq_length_and_label():
    tok = load_tokenizer(TINY)
    with pytest.raises(UserError, match="max_seq_length=4 is too small"):
        encode_examples(tok, [ex("a", "b")], get_task("sst2"), 4)
    with pytest.raises(UserError, match="test:1: unknown label '7'"):
        encode_examples(tok, [ex("a", label="7")], get_task("sst2"), 8)


# --------------------------------------------------------------------------- transformers parity

# Added to a copy of the tiny vocab so that accents, case and CJK characters can match a token
# (rather than all becoming [UNK]): uncased, "Café" normalises to "cafe"; cased, it stays.
EXTRA_TOKENS = ["cafe", "café", "Café", "naive", "école", "Hello", "The", "中", "文", "##é"]
LONG = "the cat sat on the mat and the dog ran away " * 6
TRICKY_TEXTS = [
    "The cat sat",
    "PLAYING Playing playing player",  # case; word pieces
    "Café naïve ÉCOLE école cafe\u0301",  # accents, precomposed and combining
    "unhappy!!?'\"",  # punctuation after word pieces
    "hello,world...(yes)--no",  # punctuation without spaces
    "中文 cat中dog 北京",  # CJK characters split apart, known and unknown
    "zzzqqq xylophone dogcatcher hellos",  # unknown words, partly known ones
    "a [MASK] cat [SEP] [CLS] [PAD] [UNK]",  # special tokens written in the text
    "[mask] [Mask] [ MASK ] x[MASK]y",  # near misses, and one glued to words
    "  the\tcat\n\nsat\u00a0on \u200b mat \u3000 end\r\n",  # tabs, NBSP, zero-width, U+3000
    "",
    "   ",
    "\x00ab\ufffdc\x07 cat",  # control characters and U+FFFD
    "emoji 😀 cat Ｈｅｌｌｏ",  # a symbol outside the BMP; full-width letters
    LONG,  # a single sentence truncated too
]
TRICKY_PAIRS = [
    (LONG, "short pair"),  # longest_first: only the long one loses tokens
    ("a", LONG),
    (LONG, LONG[: len(LONG) // 2]),  # both long
    ("中文" * 10, "hello [MASK] world " * 4),
    ("", "the cat"),
    ("[SEP]", "[CLS] The cat"),
    ("Café!", "  \t "),
]


@pytest.fixture(
    params=[(True, False), (True, True), (False, False), (False, True)],
    ids=["uncased", "uncased-extra", "cased", "cased-extra"],
)
def vocab_dir(request, tmp_path) -> Path:
    """The tiny fixture vocab (plus EXTRA_TOKENS for the -extra cases) with do_lower_case set."""
    lower, extra = request.param
    directory = tmp_path / "vocab"
    directory.mkdir()
    words = VOCAB + (EXTRA_TOKENS if extra else [])
    (directory / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower}))
    return directory


def test_tokenization_matches_transformers_on_tricky_inputs(vocab_dir, tmp_path):
    """Our tokenizer (built from vocab.txt, and read from the tokenizer.json transformers saves)
    gives BertTokenizerFast's input ids and type ids, truncation included. Needs no ../shared."""
    import transformers

    lower = json.loads((vocab_dir / "tokenizer_config.json").read_text())["do_lower_case"]
    hf = transformers.BertTokenizerFast.from_pretrained(
        str(vocab_dir), do_lower_case=lower, local_files_only=True
    )
    assert hf.do_lower_case is lower
    hf.save_pretrained(tmp_path / "hf")
    json_only = tmp_path / "json_only"  # no vocab.txt to fall back on
    json_only.mkdir()
    shutil.copyfile(tmp_path / "hf" / "tokenizer.json", json_only / "tokenizer.json")

    inputs = [*TRICKY_TEXTS, *TRICKY_PAIRS]
    for source in (vocab_dir, json_only):
        tok = load_tokenizer(source)
        for max_len in (7, 16, 128):
            got = encode_texts(tok, inputs, max_len)
            for i, text in enumerate(inputs):
                pair = text if isinstance(text, tuple) else (text,)
                want = hf(*pair, truncation="longest_first", max_length=max_len)
                where = (source.name, max_len, text)
                assert got[i]["input_ids"] == want["input_ids"], where
                assert got[i]["token_type_ids"] == want["token_type_ids"], where
                assert got.lengths[i] == len(want["input_ids"]), where
        # encode_examples splits Examples into the same segments
        examples = [ex(*t) if isinstance(t, tuple) else ex(t) for t in inputs]
        data = encode_examples(tok, examples, get_task("sst2"), max_seq_length=16)
        assert [data[i]["input_ids"] for i in range(len(inputs))] == [
            hf(*(t if isinstance(t, tuple) else (t,)), truncation=True, max_length=16)["input_ids"]
            for t in inputs
        ]
    if lower:
        assert hf("Café")["input_ids"] == hf("cafe")["input_ids"]  # accents were stripped
    assert hf("[MASK]")["input_ids"] == ids("[CLS]", "[MASK]", "[SEP]")


# --------------------------------------------------------------------------- real model


@pytest.mark.shared
def test_vocab_build_matches_tokenizer_json_on_real_data(tmp_path):
    _need_shared()
    from_json = load_tokenizer(MINILM)
    from_vocab = load_tokenizer(_vocab_only_copy(MINILM, tmp_path / "vocab_only"))
    sst2 = read_examples(get_task("sst2"), SHARED_GLUE / "SST-2" / "dev.tsv")[0]
    qnli = read_examples(get_task("qnli"), SHARED_GLUE / "QNLI" / "dev.tsv")[0][:1000]
    for task, examples in ((get_task("sst2"), sst2), (get_task("qnli"), qnli)):
        a = encode_examples(from_json, examples, task, 128)
        b = encode_examples(from_vocab, examples, task, 128)
        assert (a.ids == b.ids).all() and (a.type_ids == b.type_ids).all()
        assert a.lengths == b.lengths


@pytest.mark.shared
def test_pair_truncation_matches_transformers(tmp_path):
    _need_shared()
    import transformers  # a dev dependency: missing, the test fails rather than skips

    vocab_dir = _vocab_only_copy(MINILM, tmp_path / "vocab_only")
    hf = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir))
    task = get_task("qnli")
    examples = read_examples(task, SHARED_GLUE / "QNLI" / "dev.tsv")[0][:300]
    data = encode_examples(load_tokenizer(MINILM), examples, task, max_seq_length=32)
    assert sum(n == 32 for n in data.lengths) > 250  # nearly all pairs needed truncation
    for i, e in enumerate(examples):
        want = hf(e.text_a, e.text_b, truncation="longest_first", max_length=32)
        got = data[i]
        assert got["input_ids"] == want["input_ids"], e.source
        assert got["token_type_ids"] == want["token_type_ids"], e.source
