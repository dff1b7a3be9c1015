"""The generic tasks: your own data as JSON lines or CSV, with the class names you give.

    jsonl: {"text": ..., "text_pair": ... (optional), "label": ...} a line
    csv:   a header row naming text[,text_pair],label, then CSV rows (real quoting)

Files are train.<jsonl|csv> and dev.<jsonl|csv> in task.data_dir. Class names come from
`task.labels` (index order), or `task.regression: true` for a float score per row.
"""

from __future__ import annotations

import csv
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
    clip,
    json_object,
    jsonl_rows,
    label_field,
    label_text,
    text_field,
)
from tinybert.errors import UserError


def _spec(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
    splits = (f"train.{key}", {"dev": f"dev.{key}"})
    if regression:
        if labels:
            raise UserError(f"task {key!r}: give either task.labels or task.regression, not both")
        return TaskSpec(key, (), True, ("pearson", "spearman"), "pearson", *splits)
    if labels is None:
        raise UserError(
            f"task {key!r} needs its class names: set task.labels, e.g. labels: [negative, "
            f"positive] (index order), or task.regression: true for a float score per row"
        )
    names = tuple(str(x) for x in labels)
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise UserError(
            f"task {key!r}: task.labels must be at least 2 distinct non-empty names, got {labels!r}"
        )
    metrics = ("accuracy", "f1") if len(names) == 2 else ("accuracy",)
    return TaskSpec(key, names, False, metrics, "accuracy", *splits)


def text_columns(names: Sequence[str]) -> tuple[int, int | None] | None:
    """Indices of the "text" and "text_pair" columns (or JSON keys) among `names`; None without
    "text". The generic tasks' layout, which `tinybert predict` reads too."""
    if "text" not in names:
        return None
    return names.index("text"), names.index("text_pair") if "text_pair" in names else None


def _describe(task: TaskSpec) -> str:
    if task.name == "jsonl":
        return 'a JSONL file, one object a line: {"text": ..., "text_pair": ..., "label": ...}'
    return "a CSV file with a header row naming columns text[,text_pair],label"


def _rows(task: TaskSpec, path: Path) -> Rows:
    return (_jsonl if task.name == "jsonl" else _csv_rows)(task, path)


def _jsonl(task: TaskSpec, path: Path) -> Rows:
    return jsonl_rows(task, path, _json_example)


def _json_example(task: TaskSpec, line: str, source: str) -> Example:
    try:
        obj = json_object(line, source, ("text", "label"))
    except RowError:
        raise RowError(
            f'{source}: expected an object with "text" and "label" (and optional "text_pair"), '
            f"got {clip(line)!r}"
        ) from None
    text_a = text_field(obj["text"], source, '"text"')
    pair = obj.get("text_pair")
    text_b = None if pair is None else text_field(pair, source, '"text_pair"')
    return Example(text_a, text_b, label_field(task, obj["label"], source), source)


def _csv_rows(task: TaskSpec, path: Path) -> Rows:
    """CSV with real quoting (csv module); the header names the columns."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, [])
            where = _csv_header(header, path)
            prev_end = reader.line_num
            for row in reader:
                lineno, prev_end = prev_end + 1, reader.line_num  # a row may span lines
                if row:
                    yield _csv_example(task, row, header, where, f"{path}:{lineno}")
                else:
                    yield BlankLine(f"{path}:{lineno}: blank line")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 ({e.reason}); save the file as UTF-8") from None
        except csv.Error as e:
            raise UserError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from None


def _csv_header(header: list[str], path: Path) -> dict[str, int]:
    where = {name.strip(): i for i, name in enumerate(header)}
    if "text" not in where or "label" not in where:
        raise UserError(
            f"{path}:1: the CSV header must name the columns text[,text_pair],label; got {header!r}"
        )
    return where


def _csv_example(
    task: TaskSpec, row: list[str], header: list[str], where: dict[str, int], source: str
) -> Example | RowError:
    try:
        if len(row) != len(header):
            raise RowError(
                f"{source}: expected {len(header)} columns like the header but found {len(row)} "
                f"(value {clip(','.join(row))!r})"
            )
        text_a = text_field(row[where["text"]], source, "text")
        text_b = (
            text_field(row[where["text_pair"]], source, "text_pair")
            if "text_pair" in where
            else None
        )
        return Example(text_a, text_b, label_field(task, row[where["label"]], source), source)
    except RowError as e:
        return e


def _writer(task: TaskSpec, f: TextIO) -> WriteRow:
    """JSONL: {"text", "text_pair" (pairs only), "label"} a line; CSV: a header text[,text_pair],
    label, then rows with CSV quoting. A regression label is written as a number. The first
    example decides whether the file has a text_pair column (every row must then have one)."""
    if task.name == "jsonl":

        def write_json(ex: Example) -> None:
            obj: dict = {"text": ex.text_a}
            if ex.text_b is not None:
                obj["text_pair"] = ex.text_b
            obj["label"] = ex.label if task.is_regression else label_text(ex.label)
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")

        return write_json

    out = csv.writer(f, lineterminator="\n")
    pairs: list[bool] = []  # set by the first example

    def write_csv(ex: Example) -> None:
        if not pairs:
            pairs.append(ex.text_b is not None)
            out.writerow(["text", "text_pair", "label"] if pairs[0] else ["text", "label"])
        if pairs[0] != (ex.text_b is not None):
            raise UserError(
                f"{ex.source}: some rows have a text_pair and some do not; CSV rows must agree"
            )
        texts = [ex.text_a] if ex.text_b is None else [ex.text_a, ex.text_b]
        out.writerow([*texts, label_text(ex.label)])

    return write_csv


READER = Reader(names=("jsonl", "csv"), spec=_spec, rows=_rows, describe=_describe, write=_writer)
