"""CLUE tasks: TNEWS and CLUENER readers, BIOS tags aligned to WordPiece, entity-level F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinybert.data import collate, encode_examples, get_task, load_tokenizer, read_examples
from tinybert.data.clue import (
    bios_tags,
    char_tags,
    check_tnews_labels,
    decode_spans,
    score_entities,
    token_tags,
)
from tinybert.errors import UserError

ZH_CHARS = list(
    "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读生化狂潮让你填弹扫北京上海"
)
LATIN = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "cs",
    "##ol",
    "vs",
    "ac",
    "iphone",
    "##8",
    "3",
    "1",
    "2",
    ".",
    "，",
    "。",
]


def write_zh_vocab(directory: Path) -> Path:
    """A small Chinese-style WordPiece vocabulary: single CJK characters plus a few Latin pieces."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(LATIN + ZH_CHARS) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return directory


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- TNEWS


def test_tnews_reader_uses_label_desc_names(tmp_path):
    rows = [
        {
            "label": "102",
            "label_desc": "news_entertainment",
            "sentence": "北京上海",
            "keywords": "",
        },
        {"label": "116", "label_desc": "news_game", "sentence": "生化狂潮", "keywords": "a,b"},
    ]
    task = get_task("tnews")
    examples, skipped = read_examples(task, write_jsonl(tmp_path / "dev.json", rows))
    assert len(task.labels) == 15 and skipped == 0
    assert [e.label for e in examples] == ["news_entertainment", "news_game"]
    assert examples[0].text_a == "北京上海" and examples[0].source.endswith("dev.json:1")


@pytest.mark.parametrize(
    "row, match",
    [
        ({"label": "105", "sentence": "北京"}, "unknown TNEWS label '105'"),
        (
            {"label": "102", "label_desc": "news_game", "sentence": "北京"},
            "label 102 is .news_entertainment. in TNEWS, but label_desc says",
        ),
        ({"label": "102"}, "expected a JSON object with sentence, label"),
        ("{not json", "not valid JSON"),
    ],
)
def test_tnews_bad_rows_name_the_line(tmp_path, row, match):
    good = {"label": "100", "label_desc": "news_story", "sentence": "北京"}
    path = write_jsonl(tmp_path / "train.json", [good, row])
    with pytest.raises(UserError, match=f"train.json:2: {match}"):
        read_examples(get_task("tnews"), path)


@pytest.mark.shared
def test_real_tnews_labels_json_matches(tmp_path):
    from .conftest import shared_path

    check_tnews_labels(shared_path("data/clue/tnews/labels.json"))
    wrong = write_jsonl(tmp_path / "labels.json", [{"label": "100", "label_desc": "news_story"}])
    with pytest.raises(UserError, match="differs from CLUE's 15 classes"):
        check_tnews_labels(wrong)


# --------------------------------------------------------------------------- CLUENER reading


def ner_row(text: str, label: dict) -> dict:
    return {"text": text, "label": label}


def test_cluener_reader_spans(tmp_path):
    rows = [
        ner_row(
            "浙商银行企业信贷部叶老桂博士",
            {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}},
        ),
        ner_row("生化狂潮", {}),
    ]
    examples, _ = read_examples(get_task("cluener"), write_jsonl(tmp_path / "dev.json", rows))
    assert examples[0].spans == (("company", 0, 3), ("name", 9, 11))
    assert examples[1].spans == ()


@pytest.mark.parametrize(
    "label, match",
    [
        ({"name": {"叶老": [[9, 11]]}}, r"name span \[9, 11\] covers '叶老桂', not '叶老'"),
        ({"name": {"叶老桂": [[12, 14]]}}, r"span \[12, 14\] is outside the text \(length 14"),
        (
            {"name": {"叶老桂": [[9, 11]]}, "position": {"老桂博士": [[10, 13]]}},
            "overlapping entities",
        ),
        ({"person": {"叶老桂": [[9, 11]]}}, "unknown entity type 'person'"),
        ({"name": {"叶老桂": [9, 11]}}, "position must be"),
    ],
)
def test_cluener_bad_spans_name_the_line(tmp_path, label, match):
    good = ner_row("北京", {"address": {"北京": [[0, 1]]}})
    path = write_jsonl(
        tmp_path / "train.json", [good, ner_row("浙商银行企业信贷部叶老桂博士", label)]
    )
    with pytest.raises(UserError, match=f"train.json:2: .*{match}"):
        read_examples(get_task("cluener"), path)
    examples, skipped = read_examples(get_task("cluener"), path, on_error="skip")
    assert len(examples) == 1 and skipped == 1


# --------------------------------------------------------------------------- tags and alignment


def test_char_tags_bios():
    tags = char_tags(6, [("name", 0, 2), ("address", 4, 4)])
    assert tags == ["B-name", "I-name", "I-name", "O", "S-address", "O"]
    assert bios_tags(["a", "b"]) == ("O", "B-a", "I-a", "S-a", "B-b", "I-b", "S-b")


def test_mixed_script_alignment_round_trips(tmp_path):
    """Chinese characters, a Latin word split into word pieces, digits and spaces."""
    tok = load_tokenizer(write_zh_vocab(tmp_path / "zh"))
    text = "生化 CSOL狂潮3 北京"
    spans = (("game", 3, 6), ("address", 11, 12))  # "CSOL" after a space; "北京"
    assert text[3:7] == "CSOL" and text[11:13] == "北京"
    task = get_task("cluener")
    rows = [ner_row(text, {"game": {"CSOL": [[3, 6]]}, "address": {"北京": [[11, 12]]}})]
    examples, _ = read_examples(task, write_jsonl(tmp_path / "d.json", rows))
    data = encode_examples(tok, examples, task, max_seq_length=32)
    item = data[0]
    tokens = [tok.id_to_token(i) for i in item["input_ids"]]
    assert tokens == ["[CLS]", "生", "化", "cs", "##ol", "狂", "潮", "3", "北", "京", "[SEP]"]
    tags = [None if t < 0 else task.labels[t] for t in item["tag_ids"]]
    assert tags == [
        None,
        "O",
        "O",
        "B-game",
        "I-game",
        "O",
        "O",
        "O",
        "B-address",
        "I-address",
        None,
    ]
    assert decode_spans(tags, data.token_char_spans(0)) == set(spans)
    batch = collate([item, data[0]], pad_id=0)
    assert batch["labels"].shape == batch["input_ids"].shape
    assert batch["labels"][0, 0] == -100 and batch["labels"][0, -1] == -100  # [CLS], [SEP]


def test_one_token_entity_over_several_characters_is_s():
    offsets = [(0, 0), (0, 2), (2, 4), (4, 5), (0, 0)]  # [CLS] "cs" "##ol" "x" [SEP]
    tags = char_tags(5, [("game", 0, 1)])  # the entity is exactly the first token
    assert token_tags(offsets, tags) == [None, "S-game", "O", "O", None]
    assert decode_spans(token_tags(offsets, tags), offsets) == {("game", 0, 1)}


def test_decode_spans_lenient_and_closing():
    offsets = [(i, i + 1) for i in range(7)]
    tags = ["B-a", "I-a", "I-b", "O", "I-a", "S-b", "B-a"]
    assert decode_spans(tags, offsets) == {
        ("a", 0, 1),
        ("b", 2, 2),  # an I- of another type starts a new entity
        ("a", 4, 4),  # an I- with nothing open starts one
        ("b", 5, 5),
        ("a", 6, 6),  # open at the end: closed there
    }


# --------------------------------------------------------------------------- entity F1


def test_entity_scores_hand_computed():
    gold = [{("name", 0, 2), ("address", 5, 6)}, {("name", 1, 3)}, set()]
    pred = [{("name", 0, 2), ("address", 5, 7)}, {("name", 1, 3), ("game", 4, 5)}, {("game", 0, 0)}]
    s = score_entities(gold, pred)
    # tp = 2 (both names), predicted 5, gold 3
    assert s["precision"] == pytest.approx(2 / 5)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert s["f1/name"] == 1.0 and s["f1/address"] == 0.0 and s["f1/game"] == 0.0


def test_entity_scores_empty_is_zero_not_nan():
    assert score_entities([set()], [set()]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.shared
def test_real_cluener_gold_tags_recover_almost_every_entity(tmp_path):
    """With the real Chinese vocabulary, tags derived from gold spans decode back to the spans
    except where an entity starts or ends inside a Latin word piece (e.g. "ac" in "vsac")."""
    from .conftest import shared_path

    vocab = shared_path("data/vocab/bert-base-chinese-vocab.txt")
    task = get_task("cluener")
    examples, _ = read_examples(task, shared_path("data/clue/cluener/dev.json"))
    tok = load_tokenizer_from_vocab(vocab, tmp_path)
    data = encode_examples(tok, examples, task, max_seq_length=64)
    got = [
        decode_spans(
            [None if t < 0 else task.labels[t] for t in data[i]["tag_ids"]],
            data.token_char_spans(i),
        )
        for i in range(len(data))
    ]
    scores = score_entities(data.gold_spans, got)
    assert scores["recall"] > 0.998 and scores["precision"] > 0.998


def load_tokenizer_from_vocab(vocab: Path, tmp_path: Path):
    """load_tokenizer reads a model directory: a copy of the bare vocab.txt in tmp_path."""
    import shutil

    shutil.copyfile(vocab, tmp_path / "vocab.txt")
    return load_tokenizer(tmp_path)
