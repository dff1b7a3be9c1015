"""CLUE tasks from the seed: TNEWS (15-class news titles) and CLUENER2020 (named entities).

Both are JSON lines. TNEWS: {"label": "102", "label_desc": "news_entertainment",
"sentence": ..., "keywords": ...}; the classes are named by `label_desc`, in the order of the
official labels.json. CLUENER: {"text": ..., "label": {type: {entity: [[start, end], ...]}}}
with character offsets, `end` inclusive; entities become character tags (BIOS: B-x begins a
multi-character entity, I-x continues it, S-x is a single character, O is outside), and the
tags of a token are those of its first character (see `token_tags`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tinybert.data.base import (
    BlankLine,
    Example,
    Reader,
    RowError,
    Rows,
    TaskSpec,
    WriteRow,
    json_object,
    jsonl_rows,
    label_text,
    physical_lines,
    text_field,
)
from tinybert.errors import UserError

# TNEWS (CLUE): label code -> label_desc, in labels.json order (codes 105 and 111 are unused).
TNEWS_CODES: dict[str, str] = {
    "100": "news_story",
    "101": "news_culture",
    "102": "news_entertainment",
    "103": "news_sports",
    "104": "news_finance",
    "106": "news_house",
    "107": "news_car",
    "108": "news_edu",
    "109": "news_tech",
    "110": "news_military",
    "112": "news_travel",
    "113": "news_world",
    "114": "news_stock",
    "115": "news_agriculture",
    "116": "news_game",
}
CLUENER_TYPES = (
    "address",
    "book",
    "company",
    "game",
    "government",
    "movie",
    "name",
    "organization",
    "position",
    "scene",
)


def bios_tags(types: Sequence[str]) -> tuple[str, ...]:
    """["O", "B-t1", "I-t1", "S-t1", "B-t2", ...]: the class names of a BIOS tagger."""
    return ("O", *(f"{p}-{t}" for t in types for p in ("B", "I", "S")))


# --------------------------------------------------------------------------- TNEWS


def tnews_rows(task: TaskSpec, path: Path) -> Rows:
    """TNEWS rows; the official labels.json beside the file, when present, is checked first."""
    check_tnews_labels(path.parent / "labels.json")
    return jsonl_rows(task, path, _tnews_example)


def _tnews_example(task: TaskSpec, line: str, source: str) -> Example:
    obj = json_object(line, source, ("sentence", "label"))
    text = text_field(obj["sentence"], source, '"sentence"')
    return Example(text, None, _tnews_label(obj, source), source)


def _tnews_label(obj: dict, source: str) -> str:
    code, desc = str(obj["label"]), obj.get("label_desc")
    if code not in TNEWS_CODES:
        allowed = ", ".join(f"{c} ({d})" for c, d in TNEWS_CODES.items())
        raise RowError(f"{source}: unknown TNEWS label {code!r}; allowed: {allowed}")
    if desc is not None and desc != TNEWS_CODES[code]:
        raise RowError(
            f"{source}: label {code} is {TNEWS_CODES[code]!r} in TNEWS, but label_desc says {desc!r}"
        )
    return TNEWS_CODES[code]


def check_tnews_labels(path: Path) -> None:
    """labels.json, when present beside the data, must list the classes we use, in order."""
    if not path.is_file():
        return
    listed = []
    for lineno, line in physical_lines(path):
        if isinstance(line, BlankLine):
            continue  # a list, not data: nothing to count
        try:
            obj = json.loads(line) if isinstance(line, str) else {}  # not UTF-8: KeyError
            listed.append((str(obj["label"]), obj["label_desc"]))
        except (json.JSONDecodeError, TypeError, KeyError):
            raise UserError(
                f'{path}:{lineno}: expected {{"label": ..., "label_desc": ...}}'
            ) from None
    if listed != list(TNEWS_CODES.items()):
        raise UserError(
            f"{path}: the TNEWS label list differs from CLUE's 15 classes {TNEWS_CODES}"
        )


# --------------------------------------------------------------------------- CLUENER


def cluener_rows(task: TaskSpec, path: Path) -> Rows:
    return jsonl_rows(task, path, _cluener_example)


def _cluener_example(task: TaskSpec, line: str, source: str) -> Example:
    types = {t.split("-", 1)[1] for t in task.labels if t != "O"}
    obj = json_object(line, source, ("text",))
    text = text_field(obj["text"], source, '"text"')
    spans = _spans(obj.get("label") or {}, text, types, source)
    return Example(text, None, None, source, spans=spans)


def _spans(
    label: object, text: str, types: set[str], source: str
) -> tuple[tuple[str, int, int], ...]:
    """{type: {entity: [[start, end]]}} -> sorted (type, start, end) with end inclusive, checked."""
    if not isinstance(label, dict):
        raise RowError(f'{source}: "label" must be an object {{type: {{entity: [[start, end]]}}}}')
    spans = []
    for kind, entities in label.items():
        if kind not in types:
            raise RowError(
                f"{source}: unknown entity type {kind!r}; allowed: {', '.join(sorted(types))}"
            )
        if not isinstance(entities, dict):
            raise RowError(f"{source}: entities of {kind!r} must be {{entity: [[start, end]]}}")
        for entity, positions in entities.items():
            for pos in positions if isinstance(positions, list) else [None]:
                spans.append(_span(kind, entity, pos, text, source))
    spans.sort(key=lambda s: (s[1], s[2]))
    for (k1, s1, e1), (k2, s2, e2) in zip(spans, spans[1:], strict=False):
        if s2 <= e1:
            raise RowError(
                f"{source}: overlapping entities {k1} [{s1}, {e1}] and {k2} [{s2}, {e2}]; "
                "a character can belong to one entity only"
            )
    return tuple(spans)


def _span(kind: str, entity: str, pos: object, text: str, source: str) -> tuple[str, int, int]:
    if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
        raise RowError(f"{source}: {kind} {entity!r}: position must be [start, end], got {pos!r}")
    start, end = pos
    if not 0 <= start <= end < len(text):
        raise RowError(
            f"{source}: {kind} {entity!r} span [{start}, {end}] is outside the text "
            f"(length {len(text)}; end is inclusive)"
        )
    if text[start : end + 1] != entity:
        raise RowError(
            f"{source}: {kind} span [{start}, {end}] covers {text[start : end + 1]!r}, not "
            f"{entity!r} (end is inclusive)"
        )
    return kind, start, end


def char_tags(length: int, spans: Sequence[tuple[str, int, int]]) -> list[str]:
    """BIOS tag of every character of a text of `length` characters."""
    tags = ["O"] * length
    for kind, start, end in spans:
        if start == end:
            tags[start] = f"S-{kind}"
        else:
            tags[start] = f"B-{kind}"
            for i in range(start + 1, end + 1):
                tags[i] = f"I-{kind}"
    return tags


def token_tags(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[str | None]:
    """Tags of tokens from their character spans [start, end): a token takes its first
    character's tag; a token continuing an entity it did not start (its first character is I-)
    stays I-, a single-character entity S- stays S-. Special tokens (empty span) get None."""
    out: list[str | None] = []
    for start, end in offsets:
        if end <= start:
            out.append(None)
            continue
        tag = tags[start]
        # An entity whose single token covers several characters (e.g. "CSOL" as one word
        # piece) is a one-token entity: S-. One that ends inside this token keeps B-.
        if tag.startswith("B-") and end > start + 1 and _entity_end(tags, start) <= end:
            tag = "S-" + tag[2:]
        out.append(tag)
    return out


def _entity_end(tags: Sequence[str], start: int) -> int:
    """One past the last character of the entity beginning at `start`."""
    i = start + 1
    while i < len(tags) and tags[i].startswith("I-"):
        i += 1
    return i


def decode_spans(
    tags: Sequence[str | None], offsets: Sequence[tuple[int, int]]
) -> set[tuple[str, int, int]]:
    """Entities (type, start, end inclusive, in characters) from predicted token tags.

    B-x opens an entity, I-x of the same type extends it, S-x is a whole entity; an I-x with no
    open x entity starts one (lenient, like seqeval's default); O or a special token closes it.
    """
    found: set[tuple[str, int, int]] = set()
    open_kind, open_start, open_end = None, 0, 0
    for tag, (start, end) in zip(tags, offsets, strict=True):
        prefix, _, kind = (tag or "O").partition("-")
        if open_kind is not None and not (prefix == "I" and kind == open_kind):
            found.add((open_kind, open_start, open_end))
            open_kind = None
        if prefix == "S":
            found.add((kind, start, end - 1))
        elif prefix == "B" or (prefix == "I" and open_kind is None):
            open_kind, open_start, open_end = kind, start, end - 1
        elif prefix == "I":
            open_end = end - 1
    if open_kind is not None:
        found.add((open_kind, open_start, open_end))
    return found


def score_entities(
    gold: Sequence[set | frozenset], predicted: Sequence[set | frozenset]
) -> dict[str, float]:
    """CLUENER's metric: entity precision, recall and F1 by exact (type, start, end) match,
    micro-averaged over all entities, plus F1 per type ("f1/<type>").

    gold, predicted: per example, a set of (type, start, end) entities.
    A type with no gold and no predicted entity gets no per-type key; 0/0 counts as 0.
    """
    tp: dict[str, int] = {}
    n_gold: dict[str, int] = {}
    n_pred: dict[str, int] = {}
    for g, p in zip(gold, predicted, strict=True):
        for kind, *_ in g:
            n_gold[kind] = n_gold.get(kind, 0) + 1
        for kind, *_ in p:
            n_pred[kind] = n_pred.get(kind, 0) + 1
        for kind, *_ in set(g) & set(p):
            tp[kind] = tp.get(kind, 0) + 1
    scores = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    for kind in sorted(set(n_gold) | set(n_pred)):
        scores[f"f1/{kind}"] = _prf(tp.get(kind, 0), n_pred.get(kind, 0), n_gold.get(kind, 0))["f1"]
    return scores


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------- registry


def _spec(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
    if labels is not None or regression:
        raise UserError(f"task {key!r} has fixed labels; remove task.labels/task.regression")
    splits = ("train.json", {"dev": "dev.json"})
    if key == "tnews":
        names = tuple(TNEWS_CODES.values())
        return TaskSpec("tnews", names, False, ("accuracy",), "accuracy", *splits)
    metrics = ("f1", "precision", "recall", "token_accuracy")
    return TaskSpec(
        "cluener", bios_tags(CLUENER_TYPES), False, metrics, "f1", *splits, kind="token"
    )


def _describe(task: TaskSpec) -> str:
    if task.name == "tnews":
        return 'the CLUE TNEWS JSON lines: {"label": "102", "label_desc": ..., "sentence": ...}'
    return 'the CLUENER JSON lines: {"text": ..., "label": {type: {entity: [[start, end]]}}}'


def _rows(task: TaskSpec, path: Path) -> Rows:
    return (tnews_rows if task.name == "tnews" else cluener_rows)(task, path)


def _writer(task: TaskSpec, f: TextIO) -> WriteRow:
    """TNEWS lines {"label": code, "label_desc": name, "sentence": ..., "keywords": ""} (the
    keywords are not kept by the reader). CLUENER cannot be written: its entity spans are
    character offsets into the text."""
    if task.name != "tnews":
        raise UserError(
            f"task {task.name!r}: its labels are entity spans (character offsets into the text), "
            "which cannot be written for changed text"
        )
    codes = {desc: code for code, desc in TNEWS_CODES.items()}

    def write(ex: Example) -> None:
        name = label_text(ex.label)
        obj = {"label": codes[name], "label_desc": name, "sentence": ex.text_a, "keywords": ""}
        f.write(json.dumps(obj, ensure_ascii=False) + "\n")

    return write


READER = Reader(
    names=("tnews", "cluener"), spec=_spec, rows=_rows, describe=_describe, write=_writer
)
