"""The data layer with the teacher's own tokenizer, for every supported family (tests/families.py):
encodings equal transformers' AutoTokenizer on the same directory (type ids 0 where the model
reads none), special tokens and pad ids, GD corpus packing with the family's template,
augmentation candidates with BPE and Unigram MLM tokenizers, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinybert.data import encode_examples, encode_texts, get_task, load_tokenizer, tokenizer_info
from tinybert.data.base import Example
from tinybert.data.tokenization import specials_of
from tinybert.errors import UserError

from .conftest import corpus_text
from .families import MODEL_TYPES, STYLES, TOKEN_TYPES, tiny_config, write_tokenizer

LONG = "the movie was very good and the plot was fun and the acting was warm " * 4
# Fixture words only: every character is in every family's tokenizer (no unknown pieces).
SENTENCES = [
    "the movie was good",
    "The Film Was Very BORING and the plot was dull.",
    "a story",
    "fun",
    LONG,
]
PAIRS = [
    ("the film was great", "the acting is poor"),
    (LONG, "a dull story"),  # longest_first: only the long one loses tokens
    ("a", LONG),
    (LONG, LONG[: len(LONG) // 2]),  # both long
    ("Grim.", "BRIGHT and warm"),
]
# Unknown characters, whitespace runs, special tokens written in the text: transformers 5
# rebuilds the XLM-R / DeBERTa-v2 pipelines from the vocabulary (its own normaliser and
# pre-tokeniser, XLM-R's <unk> at id 3), which the fixtures' tokenizer.json files do not have;
# so these are compared on the directory as transformers saves it, as real checkpoints are.
TRICKY = [
    "  a  story  \t\n end",
    "The good film, isn't it? Naïve café 北京 😀",
    "[CLS] <s> <mask> [MASK] it",
    "",
    ("Café!", "  \t "),
    ("", "the cat"),
]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    """model type -> a directory with the family's tokenizer files and config.json (no weights)."""
    root = tmp_path_factory.mktemp("families")
    dirs = {}
    for model_type in MODEL_TYPES:
        directory = root / model_type
        tok = write_tokenizer(directory, model_type)
        tiny_config(model_type, tok).save_pretrained(directory)
        dirs[model_type] = directory
    return dirs


def hf_tokenizer(directory: Path):
    import transformers  # a dev dependency: missing, the test fails rather than skips

    return transformers.AutoTokenizer.from_pretrained(str(directory))


# --------------------------------------------------------------------------- encoding parity


def assert_matches_transformers(directory: Path, model_type: str, inputs: list) -> None:
    tok = load_tokenizer(directory)
    hf = hf_tokenizer(directory)
    for max_len in (9, 16, 64):
        got = encode_texts(tok, inputs, max_len)
        for i, text in enumerate(inputs):
            pair = text if isinstance(text, tuple) else (text,)
            want = hf(*pair, truncation="longest_first", max_length=max_len)
            where = (directory.name, max_len, text)
            assert got[i]["input_ids"] == want["input_ids"], where
            assert got.lengths[i] == sum(want["attention_mask"]) == len(want["input_ids"]), where
            types = want.get("token_type_ids") if TOKEN_TYPES[model_type] else None
            assert got[i]["token_type_ids"] == (types or [0] * len(want["input_ids"])), where
    # encode_examples splits Examples into the same segments
    examples = [Example(*(t if isinstance(t, tuple) else (t, None)), "1", "x:1") for t in inputs]
    data = encode_examples(tok, examples, get_task("sst2"), max_seq_length=16)
    assert [data[i]["input_ids"] for i in range(len(inputs))] == [
        hf(*(t if isinstance(t, tuple) else (t,)), truncation=True, max_length=16)["input_ids"]
        for t in inputs
    ]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_encoding_matches_transformers(family_dirs, model_type, tmp_path):
    directory = family_dirs[model_type]
    assert_matches_transformers(directory, model_type, [*SENTENCES, *PAIRS])
    saved = tmp_path / f"{model_type}-saved"  # tokenizer.json as transformers writes it
    hf_tokenizer(directory).save_pretrained(saved)
    shutil.copy(directory / "config.json", saved)
    assert_matches_transformers(saved, model_type, [*SENTENCES, *PAIRS, *TRICKY])
    tok = load_tokenizer(directory)
    types = encode_texts(tok, [PAIRS[0]], 64)[0]["token_type_ids"]
    assert (1 in types) is TOKEN_TYPES[model_type]  # BERT/ELECTRA: 1 on the second text


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_specials_and_pad_id(family_dirs, model_type):
    style = STYLES[model_type]
    tok = load_tokenizer(family_dirs[model_type])
    hf = hf_tokenizer(family_dirs[model_type])
    s = tok.specials
    assert (s.cls, s.sep, s.pad, s.unk, s.mask) == (
        style.cls, style.sep, style.pad, style.unk, style.mask,
    )  # fmt: skip
    assert (s.cls_id, s.sep_id, s.pad_id, s.mask_id) == (
        hf.cls_token_id, hf.sep_token_id, hf.pad_token_id, hf.mask_token_id,
    )  # fmt: skip
    assert s.token_types is TOKEN_TYPES[model_type]
    assert tokenizer_info(tok) == (tok.get_vocab_size(with_added_tokens=True), hf.pad_token_id)
    between = (s.sep_id,) * style.pair_sep
    assert s.template.pair == ((s.cls_id,), between, (s.sep_id,))
    assert s.template.single == ((s.cls_id,), (s.sep_id,))
    assert s.template.pair_specials == 2 + style.pair_sep
    assert specials_of(tok) is s
    # the smallest max_seq_length holds the template's specials and a token of each text
    smallest = 2 + 2 + style.pair_sep
    encode_texts(tok, [("a", "b")], smallest)
    with pytest.raises(UserError, match=f"use at least {smallest}"):
        encode_texts(tok, [("a", "b")], smallest - 1)


def test_specials_as_content_dicts_and_special_tokens_map_wins(family_dirs, tmp_path):
    directory = tmp_path / "roberta"
    shutil.copytree(family_dirs["roberta"], directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["cls_token"] = {"content": "<s>", "lstrip": False, "__type": "AddedToken"}
    config["mask_token"] = "<nothing>"  # overridden by special_tokens_map.json's "<mask>"
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    s = load_tokenizer(directory).specials
    assert (s.cls, s.mask) == ("<s>", "<mask>")


def test_token_types_follow_config_json(family_dirs, tmp_path):
    """A directory without config.json keeps the template's segment ids; type_vocab_size <= 1
    zeroes them for any model type."""
    directory = tmp_path / "deberta"
    shutil.copytree(family_dirs["deberta-v2"], directory)
    (directory / "config.json").unlink()
    tok = load_tokenizer(directory)
    assert tok.specials.token_types
    assert 1 in tok.encode("a", "b").type_ids  # the fixture's template writes 1 on B
    bert = tmp_path / "bert"
    shutil.copytree(family_dirs["bert"], bert)
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "type_vocab_size": 1}))
    tok = load_tokenizer(bert)
    assert not tok.specials.token_types and set(tok.encode("a", "b").type_ids) == {0}


def test_wrapper_behaves_as_a_tokenizer(family_dirs, tmp_path):
    import pickle

    tok = load_tokenizer(family_dirs["roberta"])
    tok.enable_truncation(5)
    assert len(tok.encode(LONG).ids) == 5
    tok.no_truncation()
    tok.save(str(tmp_path / "tokenizer.json"))
    from tokenizers import Tokenizer

    plain = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert plain.encode(LONG).ids == tok.encode(LONG).ids
    back = pickle.loads(pickle.dumps(tok))
    assert back.specials == tok.specials and back.encode("fun").ids == tok.encode("fun").ids


@pytest.mark.parametrize("processor", ["bert", "sequence"])
def test_type_ids_zeroed_in_any_post_processor(family_dirs, tmp_path, processor):
    """BertProcessing and a Sequence around a template writing 1s: zero for a model without
    token types, untouched (0/1) for BERT."""
    from tokenizers import Tokenizer, processors

    directory = tmp_path / processor
    shutil.copytree(family_dirs["distilbert"], directory)
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    cls, sep = ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))
    if processor == "bert":
        tok.post_processor = processors.BertProcessing(sep, cls)
    else:
        template = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
        )
        tok.post_processor = processors.Sequence([processors.ByteLevel(), template])
    tok.save(str(directory / "tokenizer.json"))
    want = tok.encode("the film", "a story")
    assert 1 in want.type_ids
    got = load_tokenizer(directory).encode("the film", "a story")  # distilbert: no types
    assert got.ids == want.ids and set(got.type_ids) == {0}
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    assert load_tokenizer(directory).encode("the film", "a story").type_ids == want.type_ids


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_token_task_spans_leave_out_the_word_mark(family_dirs, model_type):
    """NER with a BPE/Unigram tokenizer: "Ġgood" covers " good"; its tag is good's, not the
    space's."""
    tok = load_tokenizer(family_dirs[model_type])
    task = get_task("cluener")
    text = "the good film"  # "good" is a name (type "movie"), characters 4..7 inclusive
    ex = Example(text, None, None, "x:1", spans=(("movie", 4, 7),))
    data = encode_examples(tok, [ex], task, max_seq_length=16)
    spans, tags = data.token_char_spans(0), data[0]["tag_ids"]
    named = [task.labels[t] for (a, b), t in zip(spans, tags, strict=True) if text[a:b] == "good"]
    assert named == ["S-movie"]
    assert all(not text[a:b].startswith(" ") for a, b in spans)


# --------------------------------------------------------------------------- refusals


def test_missing_special_is_one_line_naming_file_and_token(family_dirs, tmp_path):
    directory = tmp_path / "roberta"
    shutil.copytree(family_dirs["roberta"], directory)
    names = json.loads((directory / "special_tokens_map.json").read_text())
    (directory / "special_tokens_map.json").write_text(json.dumps({**names, "pad_token": "<pd>"}))
    with pytest.raises(UserError) as err:
        load_tokenizer(directory)
    message = str(err.value)
    assert "\n" not in message
    assert "tokenizer.json" in message and "<pd>" in message and "pad_token" in message
    assert "special_tokens_map.json" in message
    # no names at all: BERT's defaults, which a RoBERTa vocabulary lacks
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        (directory / name).unlink()
    with pytest.raises(UserError, match=r"tokenizer.json: .*\[PAD\] \(pad_token\)"):
        load_tokenizer(directory)


def test_masked_lm_without_a_mask_token(family_dirs, tmp_path):
    from tinybert.data.word_replacement import MaskedLM

    directory = tmp_path / "xlmr"
    shutil.copytree(family_dirs["xlm-roberta"], directory)
    names = json.loads((directory / "special_tokens_map.json").read_text())
    (directory / "special_tokens_map.json").write_text(json.dumps({**names, "mask_token": "<m>"}))
    tok = load_tokenizer(directory)  # a mask is needed by augmentation only
    assert tok.specials.mask_id is None
    with pytest.raises(UserError, match=r"tokenizer.json\) lacks its mask token <m> \(mask_token"):
        MaskedLM(tok, lambda rows, k: np.zeros((len(rows), k)))


@pytest.mark.parametrize("files", [("vocab.json", "merges.txt"), ("spm.model",), ()])
def test_non_bert_directory_without_tokenizer_json(family_dirs, tmp_path, files):
    directory = tmp_path / "model"
    directory.mkdir()
    shutil.copy(family_dirs["roberta"] / "config.json", directory)
    for name in files:
        (directory / name).write_text("x")
    with pytest.raises(UserError) as err:
        load_tokenizer(directory)
    message = str(err.value)
    assert "\n" not in message and "no tokenizer.json" in message
    assert f"AutoTokenizer.from_pretrained('{directory}').save_pretrained('{directory}')" in message
    assert all(name in message for name in files)


# --------------------------------------------------------------------------- GD corpus


@pytest.mark.parametrize("model_type", ["roberta", "deberta-v2", "bert"])
def test_corpus_packs_with_the_family_template(family_dirs, tmp_path, model_type):
    from tinybert.data.corpus import CorpusDataset, PackingOptions, prepare_corpus

    directory = family_dirs[model_type]
    text = tmp_path / "corpus.txt"
    text.write_text(corpus_text(12, seed=1))
    out = tmp_path / "prepared"
    stats = prepare_corpus([str(text)], directory, out, PackingOptions(max_seq_length=24))
    tok = load_tokenizer(directory)
    s, style = tok.specials, STYLES[model_type]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["pad_id"] == s.pad_id
    assert meta["token_types"] is TOKEN_TYPES[model_type]
    assert meta["template"]["pair"] == [[s.cls_id], [s.sep_id] * style.pair_sep, [s.sep_id]]
    data = CorpusDataset(out, tokenizer_dir=directory)
    batch = data.collate(list(range(len(data))))
    ids, mask, types = (batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids"))
    _, seg = data.rows(list(range(len(data))))
    specials = {s.cls_id, s.sep_id, s.pad_id}
    content = []
    for row in range(len(data)):
        n, len_a = int(mask[row].sum()), int(seg[row, 1])
        assert n <= 24 and ids[row, 0] == s.cls_id and ids[row, n - 1] == s.sep_id
        assert (ids[row, n:] == s.pad_id).all()
        if len_a < n:  # a pair: A, the template's separators, B
            assert list(ids[row, len_a - style.pair_sep : len_a]) == [s.sep_id] * style.pair_sep
            segments = [ids[row, 1 : len_a - style.pair_sep], ids[row, len_a : n - 1]]
        else:
            segments = [ids[row, 1 : n - 1]]
        assert all(len(x) and not specials & set(x.tolist()) for x in segments)
        content += [t for x in segments for t in x.tolist()]
        want_types = [0] * len_a + [1] * (n - len_a) if TOKEN_TYPES[model_type] else [0] * n
        assert types[row, :n].tolist() == want_types and not types[row, n:].any()
    # every token of the text, in order, and nothing else
    paragraphs = [p.strip() for p in text.read_text().splitlines() if p.strip()]
    want = [t for p in paragraphs for t in tok.encode(p, add_special_tokens=False).ids]
    assert content == want and stats.tokens == int(mask.sum())


def test_corpus_refuses_another_families_tokenizer(family_dirs, tmp_path):
    from tinybert.data.corpus import CorpusDataset, PackingOptions, prepare_corpus

    text = tmp_path / "corpus.txt"
    text.write_text(corpus_text(4, seed=1))
    prepare_corpus([str(text)], family_dirs["roberta"], tmp_path / "p", PackingOptions(32))
    with pytest.raises(UserError, match="another vocabulary"):
        CorpusDataset(tmp_path / "p", tokenizer_dir=family_dirs["modernbert"])
    same_vocab = tmp_path / "renamed"  # the same vocabulary, other special tokens
    shutil.copytree(family_dirs["roberta"], same_vocab)
    names = json.loads((same_vocab / "special_tokens_map.json").read_text())
    (same_vocab / "special_tokens_map.json").write_text(json.dumps({**names, "pad_token": "<unk>"}))
    with pytest.raises(UserError, match="other special tokens.*prepare-corpus"):
        CorpusDataset(tmp_path / "p", tokenizer_dir=same_vocab)


# --------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("model_type, marker", [("roberta", "Ġ"), ("xlm-roberta", "▁")])
def test_words_of_bpe_and_unigram_tokenizers(family_dirs, model_type, marker):
    from tinybert.data.word_replacement import candidate_exclusions
    from tinybert.data.words import tokenizer_words, whole_word, word_marker

    tok = load_tokenizer(family_dirs[model_type])
    assert word_marker(tok) == marker
    text = "The good  film was a movie"
    (words,) = tokenizer_words(tok, [text])
    assert [text[a:b] for a, b in words.spans] == ["The", "good", "film", "was", "a", "movie"]
    # the words' tokens are the text's tokens, in order, whitespace-only ones aside
    assert list(words.ids) == tok.encode(text, add_special_tokens=False).ids
    good = words.ids[words.first[1] : words.first[1] + words.count[1]]
    assert words.count[1] == 1 and tok.id_to_token(good[0]) == marker + "good"
    assert whole_word(tok, good[0], marker) == "good"
    vocab = tok.get_vocab()
    excluded = set(candidate_exclusions(tok))
    specials = tok.specials
    assert {specials.cls_id, specials.sep_id, specials.pad_id, specials.mask_id} <= excluded
    for token, i in vocab.items():
        starts_word = token.startswith(marker) and token != marker and i not in {
            specials.cls_id, specials.sep_id, specials.pad_id, specials.unk_id, specials.mask_id
        }  # fmt: skip
        assert (i not in excluded) == starts_word, token  # continuations never candidates
        if starts_word:
            assert whole_word(tok, i, marker) == tok.decode([i]).strip() != ""


class FakeMLM:
    """Answers every masked row with fixed token ids; records the rows."""

    def __init__(self, answer: list[int]):
        self.answer, self.rows = answer, []

    def __call__(self, rows: list[list[int]], k: int) -> np.ndarray:
        self.rows += rows
        return np.array([(self.answer * k)[:k] for _ in rows])


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "modernbert", "deberta-v2"])
def test_mlm_candidates_with_bpe_and_unigram_tokenizers(family_dirs, model_type):
    from tinybert.data.word_replacement import Augmenter, AugmentOptions, MaskedLM

    tok = load_tokenizer(family_dirs[model_type])
    s, marker = tok.specials, "Ġ" if STYLES[model_type].kind == "bpe" else "▁"
    vocab = tok.get_vocab()
    continuation = next(i for t, i in vocab.items() if not t.startswith(marker) and len(t) > 1
                        and i not in (s.cls_id, s.sep_id, s.pad_id, s.unk_id, s.mask_id))  # fmt: skip
    answer = [s.mask_id, continuation, vocab[marker + "great"], vocab[marker + "film"],
              vocab[marker + "good"], vocab[marker + "movie"]]  # fmt: skip
    fake = FakeMLM(answer)
    mlm = MaskedLM(tok, fake, max_len=7, batch_size=4)
    assert (mlm.prefix, mlm.suffix) == ((s.cls_id,), (s.sep_id,))
    text = "a good film the Movie was boring"
    ex = Example(text, "the film", "1", "x:1")
    augmenter = Augmenter(AugmentOptions(n=3, p=1.0, k=2, seed=1, dedupe=False), None, mlm)
    out = list(augmenter.run([ex]))
    assert out[0] is ex and len(out) == 4
    assert fake.rows and all(
        r[0] == s.cls_id and r[-1] == s.sep_id and r.count(s.mask_id) == 1 and len(r) <= 7
        for r in fake.rows
    )
    # candidates, best first without the word itself, the mask or a continuation piece:
    # great, film, good, movie; k=2 of them, in the word's case. Words of several tokens stay.
    from tinybert.data.words import match_case, tokenizer_words

    for original, field in ((text, "text_a"), ("the film", "text_b")):
        (split,) = tokenizer_words(tok, [original])
        for i, word in enumerate(original.split()):
            others = [w for w in ("great", "film", "good", "movie") if w != word.lower()]
            want = {match_case(word, w) for w in others[:2]} if split.count[i] == 1 else {word}
            assert {getattr(c, field).split()[i] for c in out[1:]} <= want, (word, want)
    assert sum(n == 1 for n in tokenizer_words(tok, [text])[0].count) >= 4  # good, film, ...
    assert augmenter.summary.words["replaced_mlm"] > 0


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_augment_command_with_a_non_bert_mlm(tmp_path, model_type, capsys):
    from tinybert.model import load_any_model

    from .conftest import check_mlm_augment
    from .families import write_teacher

    directory = write_teacher(tmp_path / model_type, model_type, head="mlm")
    model, _ = load_any_model(directory, head="mlm")
    check_mlm_augment(directory, model, load_tokenizer(directory), tmp_path, capsys)
