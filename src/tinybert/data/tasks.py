"""Task registry and readers: official GLUE TSV files, plus generic JSONL / CSV files.

    task = get_task("mnli")
    examples, n_skipped = read_examples(task, "glue/MNLI/dev_matched.tsv")

Each GLUE task is read in the exact layout of its official files (column positions, header or not).
GLUE text contains quote characters that are *not* CSV quoting, so TSV lines are split on tabs by
hand. Every problem is reported as "path:line: what is wrong (value ...)"; with on_error="skip" bad
rows are dropped and counted instead (QQP's train.tsv has a few rows with missing columns).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinybert.errors import UserError

OnError = Literal["raise", "skip"]
_SKIP_HINT = " (fix the row, or set task.on_bad_row=skip to drop bad rows)"


@dataclass(frozen=True)
class Example:
    """One input: a sentence (or sentence pair) and its label, with where it came from."""

    text_a: str
    text_b: str | None
    label: str | float | None  # class name, regression score, or None (unlabelled)
    source: str  # "path:line", for error messages
    spans: tuple[tuple[str, int, int], ...] | None = None  # NER: (type, start, end incl.) chars


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its label set, how it is scored, and which files hold its splits."""

    name: str  # canonical: sst2 mnli qnli cola mrpc qqp stsb rte wnli jsonl csv
    labels: tuple[str, ...]  # class names in index order; () for regression
    is_regression: bool
    metrics: tuple[str, ...]  # e.g. ("accuracy",), ("accuracy", "f1"), ("mcc",)
    main_metric: str
    train_split: str  # file name inside the task's data_dir, e.g. "train.tsv"
    dev_splits: dict[str, str]  # eval name -> file name, e.g. {"dev": "dev.tsv"}
    kind: Literal["sequence", "token"] = "sequence"  # token: one label per token (NER)


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

# name -> (spec, layout). Column positions follow the files distributed by the GLUE benchmark.
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
        TaskSpec("mrpc", _BINARY, False, ("accuracy", "f1"), "f1", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "MRPC", (5,), 3, 4, 0, {0: "Quality", 3: "#1 String", 4: "#2 String"},
            "header 'Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String'",
        ),
    ),
    "qqp": (
        TaskSpec("qqp", _BINARY, False, ("accuracy", "f1"), "f1", "train.tsv", dict(_DEV)),
        _TsvLayout(
            "QQP", (6,), 3, 4, 5, {3: "question1", 4: "question2", 5: "is_duplicate"},
            "header 'id<TAB>qid1<TAB>qid2<TAB>question1<TAB>question2<TAB>is_duplicate'",
        ),
    ),
    "stsb": (
        TaskSpec("stsb", (), True, ("pearson", "spearman"), "pearson", "train.tsv", dict(_DEV)),
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
_GENERIC = ("jsonl", "csv")
_CLUE = ("tnews", "cluener")
KNOWN_TASKS = (*_GLUE, *_CLUE, *_GENERIC)


class _RowError(Exception):
    """One bad row; read_examples turns it into a UserError or a skip."""


# --------------------------------------------------------------------------- registry


def get_task(name: str, labels: Sequence[str] | None = None, regression: bool = False) -> TaskSpec:
    """Look up a task by name ("sst2", "SST-2", "mnli", ..., "jsonl", "csv").

    GLUE tasks have fixed labels. The generic jsonl/csv tasks take the class names in index order
    via `labels`, or `regression=True` (a float score per row) instead.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key in _GLUE:
        return _glue_task(key, labels, regression)
    if key in _GENERIC:
        return _generic_task(key, labels, regression)
    if key in _CLUE:
        if labels is not None or regression:
            raise UserError(f"task {key!r} has fixed labels; remove task.labels/task.regression")
        return _clue_task(key)
    raise UserError(f"unknown task {name!r}; known tasks: {', '.join(KNOWN_TASKS)}")


def _glue_task(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
    spec = _GLUE[key][0]
    if labels is not None and tuple(labels) != spec.labels:
        raise UserError(
            f"task {key!r} has fixed labels {list(spec.labels)}; remove task.labels "
            f"(it is only for the generic jsonl/csv tasks), got {list(labels)}"
        )
    if regression and not spec.is_regression:
        raise UserError(f"task {key!r} is a classification task; remove task.regression")
    return spec


def _generic_task(key: str, labels: Sequence[str] | None, regression: bool) -> TaskSpec:
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


def _clue_task(key: str) -> TaskSpec:
    from tinybert.data import clue

    splits = ("train.json", {"dev": "dev.json"})
    if key == "tnews":
        labels = tuple(clue.TNEWS_CODES.values())
        return TaskSpec("tnews", labels, False, ("accuracy",), "accuracy", *splits)
    metrics = ("f1", "precision", "recall", "token_accuracy")
    labels = clue.bios_tags(clue.CLUENER_TYPES)
    return TaskSpec("cluener", labels, False, metrics, "f1", *splits, kind="token")


# --------------------------------------------------------------------------- reading


def read_examples(
    task: TaskSpec, path: str | Path, on_error: OnError = "raise"
) -> tuple[list[Example], int]:
    """Read one split file of `task`. Returns (examples, n_skipped).

    A malformed row (wrong column count, empty text, unknown label, bad score) raises
    UserError("path:line: ...") with on_error="raise", or is dropped and counted with "skip".
    Problems with the file as a whole (missing, wrong header) always raise.
    """
    if on_error not in ("raise", "skip"):
        raise UserError(f"on_bad_row must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    _check_file(task, path)
    if task.name in _GLUE:
        rows = _tsv_rows(task, _GLUE[task.name][1], path)
    elif task.name == "jsonl":
        rows = _jsonl_rows(task, path)
    elif task.name == "csv":
        rows = _csv_rows(task, path)
    elif task.name in _CLUE:
        from tinybert.data import clue

        rows = (clue.tnews_rows if task.name == "tnews" else clue.cluener_rows)(task, path)
    else:
        raise UserError(f"unknown task {task.name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    examples, skipped = _collect(rows, on_error)
    if not examples:
        raise UserError(f"{path}: no usable examples ({skipped} bad rows skipped)")
    return examples, skipped


def _collect(rows: Iterator[Example | _RowError], on_error: OnError) -> tuple[list[Example], int]:
    """Keep good rows; raise on (or count) the bad ones."""
    examples, skipped = [], 0
    for row in rows:
        if isinstance(row, Example):
            examples.append(row)
        elif on_error == "skip":
            skipped += 1
        else:
            raise UserError(f"{row}{_SKIP_HINT}")
    return examples, skipped


def _check_file(task: TaskSpec, path: Path) -> None:
    if path.is_file():
        return
    if task.name in _GLUE:
        layout = _GLUE[task.name][1]
        what = f"the official GLUE {layout.title} file ({layout.describe})"
    elif task.name == "jsonl":
        what = 'a JSONL file, one object a line: {"text": ..., "text_pair": ..., "label": ...}'
    elif task.name == "tnews":
        what = 'the CLUE TNEWS JSON lines: {"label": "102", "label_desc": ..., "sentence": ...}'
    elif task.name == "cluener":
        what = 'the CLUENER JSON lines: {"text": ..., "label": {type: {entity: [[start, end]]}}}'
    else:
        what = "a CSV file with a header row naming columns text[,text_pair],label"
    state = "is a directory" if path.is_dir() else "not found"
    raise UserError(f"{path}: {state}; expected {what}")


def _physical_lines(path: Path) -> Iterator[tuple[int, str | _RowError]]:
    """Yield (1-based line number, text without its line ending); blank lines are left out.

    Lines are split on "\\n" only: GLUE text may hold other Unicode line separators.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    lineno,
                    _RowError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})"),
                )
                continue
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # tolerate a UTF-8 byte-order mark
            line = line.rstrip("\r\n")
            if line:
                yield lineno, line


def _tsv_rows(task: TaskSpec, layout: _TsvLayout, path: Path) -> Iterator[Example | _RowError]:
    lines = _physical_lines(path)
    if layout.header is not None:
        lineno, first = next(lines, (1, ""))
        _check_header(layout, path, lineno, first)
    for lineno, line in lines:
        if isinstance(line, _RowError):
            yield line
            continue
        try:
            yield _tsv_example(task, layout, line.split("\t"), f"{path}:{lineno}")
        except _RowError as e:
            yield e


def _check_header(layout: _TsvLayout, path: Path, lineno: int, line: str | _RowError) -> None:
    cols = line.split("\t") if isinstance(line, str) else []
    ok = len(cols) in layout.n_cols and all(cols[i] == n for i, n in layout.header.items())
    if not ok:
        got = line if isinstance(line, str) else str(line)
        hint = " (GLUE test files have no labels)" if path.name.startswith("test") else ""
        raise UserError(
            f"{path}:{lineno}: not the official GLUE {layout.title} layout: expected "
            f"{layout.describe}; got header {got[:200]!r}{hint}"
        )


def _tsv_example(task: TaskSpec, layout: _TsvLayout, cols: list[str], source: str) -> Example:
    if len(cols) not in layout.n_cols:
        want = " or ".join(str(n) for n in layout.n_cols)
        line = _clip("\t".join(cols))
        raise _RowError(
            f"{source}: expected {want} tab-separated columns for {layout.title} but found "
            f"{len(cols)} (value {line!r})"
        )
    text_a = _text(cols[layout.text_a], source, f"column {layout.text_a + 1}")
    text_b = None
    if layout.text_b is not None:
        text_b = _text(cols[layout.text_b], source, f"column {layout.text_b + 1}")
    return Example(text_a, text_b, _label(task, cols[layout.label], source), source)


def _jsonl_rows(
    task: TaskSpec, path: Path, parse: Callable[[TaskSpec, str, str], Example] | None = None
) -> Iterator[Example | _RowError]:
    """Examples of a JSON-lines file, each line read by `parse(task, line, "path:line")`."""
    parse = parse or _json_example
    for lineno, line in _physical_lines(path):
        if isinstance(line, _RowError):
            yield line
            continue
        source = f"{path}:{lineno}"
        try:
            yield parse(task, line, source)
        except _RowError as e:
            yield e


def _json_example(task: TaskSpec, line: str, source: str) -> Example:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise _RowError(f"{source}: not valid JSON ({e.msg}; value {_clip(line)!r})") from None
    if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
        raise _RowError(
            f'{source}: expected an object with "text" and "label" (and optional "text_pair"), '
            f"got {_clip(line)!r}"
        )
    text_a = _text(obj["text"], source, '"text"')
    pair = obj.get("text_pair")
    text_b = None if pair is None else _text(pair, source, '"text_pair"')
    return Example(text_a, text_b, _label(task, obj["label"], source), source)


def _csv_rows(task: TaskSpec, path: Path) -> Iterator[Example | _RowError]:
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
) -> Example | _RowError:
    try:
        if len(row) != len(header):
            raise _RowError(
                f"{source}: expected {len(header)} columns like the header but found {len(row)} "
                f"(value {_clip(','.join(row))!r})"
            )
        text_a = _text(row[where["text"]], source, "text")
        text_b = (
            _text(row[where["text_pair"]], source, "text_pair") if "text_pair" in where else None
        )
        return Example(text_a, text_b, _label(task, row[where["label"]], source), source)
    except _RowError as e:
        return e


# --------------------------------------------------------------------------- fields


def _text(value: object, source: str, what: str) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{source}: {what} must be a string, got {value!r}")
    if not value.strip():
        raise _RowError(f"{source}: empty text in {what} (value {value!r})")
    return value


def _label(task: TaskSpec, value: object, source: str) -> str | float:
    """A class name from task.labels, or a finite float score for regression."""
    if task.is_regression:
        return _score(value, source)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # JSON 0/1 for labels named "0"/"1"
    name = value.strip() if isinstance(value, str) else value
    if name not in task.labels:
        raise _RowError(f"{source}: unknown label {value!r}; allowed: {', '.join(task.labels)}")
    return name


def _score(value: object, source: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        score = float(value)
    except (TypeError, ValueError):
        raise _RowError(f"{source}: score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise _RowError(f"{source}: score {value!r} is not a finite number")
    return score


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."
