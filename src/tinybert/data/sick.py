"""SICK (Marelli et al., 2014): sentence pairs with a relatedness score and an entailment label,
read from the official SICK.txt as distributed (tab-separated, 12 columns, a header row).

Two tasks over the same file, named as SentEval names them:
    sick-e  entailment: ENTAILMENT / NEUTRAL / CONTRADICTION (3-class NLI, accuracy)
    sick-r  relatedness: a score from 1 to 5 (regression, Pearson / Spearman)

SICK.txt holds every split; its `SemEval_set` column says which (TRAIN 4,439, TRIAL 495,
TEST 4,906). The task's split names select those rows ("SICK.txt#TRAIN"), so a model trains on
TRAIN, picks its best checkpoint on TRIAL (the first dev split) and is also scored on TEST. A
file without the `#SET` part (e.g. `tinybert augment`'s output) is read whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
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
    clip,
    label_field,
    label_text,
    physical_lines,
    split_source,
    text_field,
    tsv_field,
)
from tinybert.errors import UserError

FILE = "SICK.txt"
COLUMNS = (
    "pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score",
    "entailment_AB", "entailment_BA", "sentence_A_original", "sentence_B_original",
    "sentence_A_dataset", "sentence_B_dataset", "SemEval_set",
)  # fmt: skip
_A, _B, _LABEL, _SCORE, _SET = 1, 2, 3, 4, 11
_SPLITS = (f"{FILE}#TRAIN", {"trial": f"{FILE}#TRIAL", "test": f"{FILE}#TEST"})

_SPECS = {
    "sicke": TaskSpec(
        "sicke", ("ENTAILMENT", "NEUTRAL", "CONTRADICTION"), False, ("accuracy",), "accuracy",
        *_SPLITS,
    ),
    "sickr": TaskSpec(
        "sickr", (), True, ("pearson", "spearman"), "pearson", *_SPLITS, score_range=(1.0, 5.0)
    ),
}  # fmt: skip


def _spec(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
    spec = _SPECS[key]
    if labels is not None:
        raise UserError(f"task {key!r} has fixed labels {list(spec.labels)}; remove task.labels")
    if regression and not spec.is_regression:
        raise UserError(
            "task 'sick-e' is the entailment label; for the relatedness score use task.name: "
            "sick-r (and remove task.regression)"
        )
    return replace(spec, dev_splits=dict(spec.dev_splits))


def _describe(task: TaskSpec) -> str:
    return (
        "the official SICK.txt: a tab-separated header row naming 12 columns "
        f"({' '.join(COLUMNS)}), then one sentence pair a line"
    )


def _rows(task: TaskSpec, path: Path) -> Rows:
    file, wanted = split_source(path)
    lines = physical_lines(file)
    lineno, first = next(lines, (1, ""))
    while isinstance(first, BlankLine):  # blank lines before the header: counted, as elsewhere
        yield first
        lineno, first = next(lines, (1, ""))
    if not isinstance(first, str) or tuple(first.split("\t")) != COLUMNS:
        raise UserError(f"{file}:{lineno}: not the SICK layout: expected {_describe(task)}")
    column = _SCORE if task.is_regression else _LABEL
    for lineno, line in lines:
        if isinstance(line, RowError):
            yield line
            continue
        source = f"{file}:{lineno}"
        cols = line.split("\t")
        if len(cols) != len(COLUMNS):
            yield RowError(
                f"{source}: expected {len(COLUMNS)} tab-separated columns but found {len(cols)} "
                f"(value {clip(line)!r})"
            )
        elif wanted is None or cols[_SET] == wanted:
            try:
                a = text_field(cols[_A], source, "sentence_A")
                b = text_field(cols[_B], source, "sentence_B")
                yield Example(a, b, label_field(task, cols[column], source), source)
            except RowError as e:
                yield e


def _writer(task: TaskSpec, f: TextIO) -> WriteRow:
    """SICK.txt's header and layout: pair ids numbered, the two sentences, the task's label or
    score in its column, SemEval_set TRAIN, the other columns empty."""
    f.write("\t".join(COLUMNS) + "\n")
    count = itertools.count(1)
    column = _SCORE if task.is_regression else _LABEL

    def write(ex: Example) -> None:
        row = [""] * len(COLUMNS)
        row[0], row[_SET] = str(next(count)), "TRAIN"
        row[_A] = tsv_field(ex.text_a, ex.source)
        row[_B] = tsv_field(ex.text_b or "", ex.source)
        row[column] = label_text(ex.label)
        f.write("\t".join(row) + "\n")

    return write


READER = Reader(names=tuple(_SPECS), spec=_spec, rows=_rows, describe=_describe, write=_writer)
