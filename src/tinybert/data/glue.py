"""GLUE tasks, read in the exact layout of their official TSV files.

Column positions, header or not, and label sets follow the files distributed by the GLUE
benchmark. GLUE text contains quote characters that are *not* CSV quoting, so lines are split
on tabs by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TextIO

from tinybert.data.base import (
    BlankLine,
    Example,
    Reader,
    RowError,
    Rows,
    TaskSpec,
    WriteRow,
    clip,
    label_field,
    label_text,
    physical_lines,
    text_field,
    tsv_field,
)
from tinybert.errors import UserError


@dataclass(frozen=True)
class _TsvLayout:
    """Where things are in one GLUE task's official TSV files."""

    title: str  # the official folder name, e.g. "SST-2"
    n_cols: tuple[int, ...]  # allowed column counts (MNLI: 12 in train, 16 in dev)
    text_a: int
    text_b: int | None
    label: int  # negative counts from the end (MNLI's gold_label is always last)
    header: dict[int, str] | None  # expected names of the columns we use; None: no header row
    describe: str  # the layout in words, for "file not found" and header errors


_DEV = {"dev": "dev.tsv"}
_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_PAIR_HEADER = {1: "sentence1", 2: "sentence2", -1: "label"}
# MRPC and QQP: a model answering "1" for every pair scores F1 0.81 on MRPC dev, so the best
# checkpoint is picked on GLUE's combined score, the mean of accuracy and F1, which it cannot win.
_ACC_F1 = ("accuracy", "f1", "acc_and_f1")

# name -> (spec, layout)
_GLUE: dict[str, tuple[TaskSpec, _TsvLayout]] = {
    "sst2": (
        TaskSpec("sst2", _BINARY, False, ("accuracy",), "accuracy", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "SST-2", (2,), 0, None, 1, {0: "sentence", 1: "label"},
            "header 'sentence<TAB>label', then a sentence and a 0/1 label per line",
        ),
    ),
    "cola": (
        TaskSpec("cola", _BINARY, False, ("mcc",), "mcc", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "CoLA", (4,), 3, None, 1, None,
            "no header; 4 columns: source, 0/1 label, original marker, sentence",
        ),
    ),
    "mrpc": (
        TaskSpec("mrpc", _BINARY, False, _ACC_F1, "acc_and_f1", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "MRPC", (5,), 3, 4, 0, {0: "Quality", 3: "#1 String", 4: "#2 String"},
            "header 'Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String'",
        ),
    ),
    "qqp": (
        TaskSpec("qqp", _BINARY, False, _ACC_F1, "acc_and_f1", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "QQP", (6,), 3, 4, 5, {3: "question1", 4: "question2", 5: "is_duplicate"},
            "header 'id<TAB>qid1<TAB>qid2<TAB>question1<TAB>question2<TAB>is_duplicate'",
        ),
    ),
    "stsb": (
        TaskSpec(
            "stsb", (), True, ("pearson", "spearman"), "pearson", "train.tsv", dict(_DEV),
            score_range=(0.0, 5.0),
        ),
        _TsvLayout(
            "STS-B", (10,), 7, 8, -1, {7: "sentence1", 8: "sentence2", -1: "score"},
            "header with 10 columns 'index genre filename year old_index source1 source2 "
            "sentence1 sentence2 score'",
        ),
    ),
    "mnli": (
        TaskSpec(
            "mnli", ("contradiction", "entailment", "neutral"), False, ("accuracy",), "accuracy",
            "train.tsv", {"dev_matched": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv"},
        ),
        _TsvLayout(
            "MNLI", (12, 16), 8, 9, -1, {8: "sentence1", 9: "sentence2", -1: "gold_label"},
            "header with 12 columns (train) or 16 (dev): sentence1 in column 9, sentence2 in "
            "column 10, gold_label last",
        ),
    ),
    "qnli": (
        TaskSpec("qnli", _NLI2, False, ("accuracy",), "accuracy", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "QNLI", (4,), 1, 2, -1, {1: "question", 2: "sentence", -1: "label"},
            "header 'index<TAB>question<TAB>sentence<TAB>label'",
        ),
    ),
    "rte": (
        TaskSpec("rte", _NLI2, False, ("accuracy",), "accuracy", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "RTE", (4,), 1, 2, -1, _PAIR_HEADER,
            "header 'index<TAB>sentence1<TAB>sentence2<TAB>label'",
        ),
    ),
    "wnli": (
        TaskSpec("wnli", _BINARY, False, ("accuracy",), "accuracy", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "WNLI", (4,), 1, 2, -1, _PAIR_HEADER,
            "header 'index<TAB>sentence1<TAB>sentence2<TAB>label'",
        ),
    ),
}  # fmt: skip


def _spec(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
    spec = _GLUE[key][0]
    if labels is not None and tuple(labels) != spec.labels:
        raise UserError(
            f"task {key!r} has fixed labels {list(spec.labels)}; remove task.labels "
            f"(it is only for the generic jsonl/csv tasks), got {list(labels)}"
        )
    if regression and not spec.is_regression:
        raise UserError(f"task {key!r} is a classification task; remove task.regression")
    return replace(spec, dev_splits=dict(spec.dev_splits))


def _describe(task: TaskSpec) -> str:
    layout = _GLUE[task.name][1]
    return f"the official GLUE {layout.title} file ({layout.describe})"


# The official columns of each train.tsv, written as the header by `_writer` (CoLA has none).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "sst2": ("sentence", "label"),
    "cola": ("source", "label", "original_label", "sentence"),
    "mrpc": ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
    "qqp": ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
    "stsb": (
        "index", "genre", "filename", "year", "old_index", "source1", "source2",
        "sentence1", "sentence2", "score",
    ),
    "mnli": (
        "index", "promptID", "pairID", "genre", "sentence1_binary_parse",
        "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
        "sentence2", "label1", "gold_label",
    ),
    "qnli": ("index", "question", "sentence", "label"),
    "rte": ("index", "sentence1", "sentence2", "label"),
    "wnli": ("index", "sentence1", "sentence2", "label"),
}  # fmt: skip
# Columns the readers do not use that get the row number (the others stay empty).
_ID_COLUMNS = frozenset({"index", "id", "qid1", "qid2", "#1 ID", "#2 ID", "promptID", "pairID"})


# ---------------------------------------------------------------------------------------------
# Text columns without a task (`tinybert predict`), from the same layouts the readers use.


class TextColumns(NamedTuple):
    """Where the text of a tab-separated file is: its text (and pair) column indices, and how
    many columns every row has."""

    text_a: int
    text_b: int | None
    n_cols: int


# Every task's (text, pair) column names, pairs first: QNLI's question + sentence must win over
# SST-2's sentence alone.
_TEXT_NAMES = sorted(
    {
        (
            _COLUMNS[key][layout.text_a],
            None if layout.text_b is None else _COLUMNS[key][layout.text_b],
        )
        for key, (_, layout) in _GLUE.items()
    },
    key=lambda names: (names[1] is None, names),
)


def header_columns(names: Sequence[str]) -> TextColumns | None:
    """The text columns of a GLUE file whose header row is `names`, found by name: any task's
    train, dev or test file (test files have no label, so their columns sit elsewhere). None
    when `names` names no GLUE text column."""
    for a, b in _TEXT_NAMES:
        if a in names and (b is None or b in names):
            return TextColumns(names.index(a), None if b is None else names.index(b), len(names))
    return None


def headerless_columns(fields: Sequence[str]) -> tuple[TextColumns, str] | None:
    """(text columns, task title) when `fields`, a file's first line, is a row of a GLUE file
    without a header row (CoLA's train and dev: source, 0/1 label, marker, sentence): the column
    count and a valid label in the label column must match. None otherwise."""
    for spec, layout in _GLUE.values():
        if layout.header is not None or len(fields) not in layout.n_cols:
            continue
        if fields[layout.label].strip() in spec.labels:
            return TextColumns(layout.text_a, layout.text_b, len(fields)), layout.title
    return None


def _writer(task: TaskSpec, f: TextIO) -> WriteRow:
    """Rows in the official layout of `task`'s train.tsv: its header (not CoLA's: it has none),
    text and label in the columns the reader takes them from, ids numbered, the rest empty
    (MNLI's parses, STS-B's genre, ...). CoLA's marker column says `*` for label 0."""
    layout, columns = _GLUE[task.name][1], _COLUMNS[task.name]
    if layout.header is not None:
        f.write("\t".join(columns) + "\n")
    count = itertools.count()
    label_col = layout.label % len(columns)

    def write(ex: Example) -> None:
        row = [str(next(count)) if name in _ID_COLUMNS else "" for name in columns]
        row[layout.text_a] = tsv_field(ex.text_a, ex.source)
        if layout.text_b is not None:
            row[layout.text_b] = tsv_field(ex.text_b or "", ex.source)
        row[label_col] = label_text(ex.label)
        if task.name == "mnli":
            row[columns.index("label1")] = row[label_col]
        if task.name == "cola":
            row[2] = "*" if ex.label == "0" else ""
        f.write("\t".join(row) + "\n")

    return write


def _rows(task: TaskSpec, path: Path) -> Rows:
    """The file's examples; a header row (all but CoLA) is checked first. Blank lines, before
    the header too, are passed on as BlankLine (counted, never an error)."""
    layout = _GLUE[task.name][1]
    header_due = layout.header is not None
    for lineno, line in physical_lines(path):
        if header_due and not isinstance(line, BlankLine):
            _check_header(layout, path, lineno, line)
            header_due = False
            continue
        if isinstance(line, RowError):
            yield line
            continue
        try:
            yield _example(task, layout, line.split("\t"), f"{path}:{lineno}")
        except RowError as e:
            yield e
    if header_due:  # an empty file
        _check_header(layout, path, 1, "")


def _check_header(layout: _TsvLayout, path: Path, lineno: int, line: str | RowError) -> None:
    cols = line.split("\t") if isinstance(line, str) else []
    header = layout.header or {}
    ok = len(cols) in layout.n_cols and all(cols[i] == n for i, n in header.items())
    if not ok:
        got = line if isinstance(line, str) else str(line)
        hint = " (GLUE test files have no labels)" if path.name.startswith("test") else ""
        raise UserError(
            f"{path}:{lineno}: not the official GLUE {layout.title} layout: expected "
            f"{layout.describe}; got header {got[:200]!r}{hint}"
        )


def _example(task: TaskSpec, layout: _TsvLayout, cols: list[str], source: str) -> Example:
    if len(cols) not in layout.n_cols:
        want = " or ".join(str(n) for n in layout.n_cols)
        raise RowError(
            f"{source}: expected {want} tab-separated columns for {layout.title} but found "
            f"{len(cols)} (value {clip(chr(9).join(cols))!r})"
        )
    text_a = text_field(cols[layout.text_a], source, f"column {layout.text_a + 1}")
    text_b = None
    if layout.text_b is not None:
        text_b = text_field(cols[layout.text_b], source, f"column {layout.text_b + 1}")
    return Example(text_a, text_b, label_field(task, cols[layout.label], source), source)


READER = Reader(names=tuple(_GLUE), spec=_spec, rows=_rows, describe=_describe, write=_writer)
