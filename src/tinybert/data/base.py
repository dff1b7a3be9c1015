"""What every task reader shares: the example and task types, and the row helpers.

A reader turns one split file into `Example`s, yielding a `RowError` (not raising) for a bad row,
so that `read_examples` can stop on it or skip and count it (`task.on_bad_row`), and a
`BlankLine` for an empty line, which is always skipped and counted. Every message says
"path:line: what is wrong (value ...)".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from tinybert.errors import UserError

OnError = Literal["raise", "skip"]
# Progress bars of long data jobs redraw this seldom (seconds) when stderr is not a terminal
# (CI, `make demo > log`), so a log gets a line now and then instead of thousands of redraws.
QUIET_INTERVAL_S = 30.0


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

    name: str  # canonical: sst2 mnli qnli cola mrpc qqp stsb rte wnli tnews cluener sicke sickr jsonl csv
    labels: tuple[str, ...]  # class names in index order; () for regression
    is_regression: bool
    metrics: tuple[str, ...]  # e.g. ("accuracy",), ("accuracy", "f1"), ("mcc",)
    main_metric: str  # the dev metric that picks the best checkpoint (see data/metrics.py)
    train_split: str  # file name inside the task's data_dir, e.g. "train.tsv"
    dev_splits: dict[str, str]  # eval name -> file name, e.g. {"dev": "dev.tsv"}
    kind: Literal["sequence", "token"] = "sequence"  # token: one label per token (NER)
    score_range: tuple[float, float] | None = None  # regression: allowed gold scores (STS-B 0-5)

    @property
    def head(self) -> Literal["sequence", "token"]:
        """The model head this task needs: one output per sequence, or one per token."""
        return self.kind

    @property
    def head_args(self) -> dict:
        """num_labels / id2label of a head for this task."""
        if self.is_regression:
            return {"num_labels": 1, "id2label": None}
        return {"num_labels": len(self.labels), "id2label": tuple(self.labels)}


class RowError(Exception):
    """One bad row; read_examples turns it into a UserError or a skip."""


class BlankLine(RowError):
    """An empty line: skipped whatever task.on_bad_row says, and counted apart from bad rows
    (a file's final line ending is no blank line)."""


Rows = Iterator[Example | RowError]
WriteRow = Callable[[Example], None]  # writes one example to a file (see Reader.write)


@dataclass(frozen=True)
class Reader:
    """One file format behind the task registry (see tasks.py).

    spec(name, labels, regression) -> TaskSpec; rows(task, path) -> Examples or RowErrors;
    describe(task) -> the expected file layout in words, for "file not found" messages;
    write(task, file) -> a function writing one Example a call to the open text file (`file`
    opened with newline=""), in this format, so that `rows` reads it back (the header, if any,
    is written first); None where the format cannot be written (NER spans).
    """

    names: tuple[str, ...]
    spec: Callable[[str, Sequence[str] | None, bool], TaskSpec]
    rows: Callable[[TaskSpec, Path], Rows]
    describe: Callable[[TaskSpec], str]
    write: Callable[[TaskSpec, TextIO], WriteRow] | None = None


# --------------------------------------------------------------------------- lines


def split_source(path: Path) -> tuple[Path, str | None]:
    """A split's file and the rows it names: "SICK.txt#TRAIN" -> (SICK.txt, "TRAIN") when one
    file holds every split (SICK); a plain path -> (path, None), every row."""
    name, sep, selector = path.name.partition("#")
    return (path.with_name(name), selector) if sep and name and selector else (path, None)


def physical_lines(path: Path) -> Iterator[tuple[int, str | RowError]]:
    """Yield (1-based line number, text without its line ending), a RowError for a line that is
    not UTF-8, a BlankLine for an empty one (counted by the caller, not dropped unseen).

    Lines are split on "\\n" only: GLUE text may hold other Unicode line separators.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, RowError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})")
                continue
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # tolerate a UTF-8 byte-order mark
            line = line.rstrip("\r\n")
            yield lineno, line if line else BlankLine(f"{path}:{lineno}: blank line")


def jsonl_rows(task: TaskSpec, path: Path, parse: Callable[[TaskSpec, str, str], Example]) -> Rows:
    """Examples of a JSON-lines file, each line read by `parse(task, line, "path:line")`."""
    for lineno, line in physical_lines(path):
        if isinstance(line, RowError):
            yield line
            continue
        try:
            yield parse(task, line, f"{path}:{lineno}")
        except RowError as e:
            yield e


def json_object(line: str, source: str, keys: tuple[str, ...]) -> dict:
    """One JSON line that must be an object holding `keys`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RowError(f"{source}: not valid JSON ({e.msg}; value {clip(line)!r})") from None
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise RowError(
            f"{source}: expected a JSON object with {', '.join(keys)}; got {clip(line)!r}"
        )
    return obj


# --------------------------------------------------------------------------- fields


def text_field(value: object, source: str, what: str) -> str:
    """A non-empty string, else a RowError naming `what` (a column or key)."""
    if not isinstance(value, str):
        raise RowError(f"{source}: {what} must be a string, got {value!r}")
    if not value.strip():
        raise RowError(f"{source}: empty text in {what} (value {value!r})")
    return value


def label_field(task: TaskSpec, value: object, source: str) -> str | float:
    """A class name from task.labels, or a finite float score (in range) for regression."""
    if task.is_regression:
        return score_field(task, value, source)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # JSON 0/1 for labels named "0"/"1"
    name = value.strip() if isinstance(value, str) else value
    if name not in task.labels:
        raise RowError(f"{source}: unknown label {value!r}; allowed: {', '.join(task.labels)}")
    return name


def score_field(task: TaskSpec, value: object, source: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RowError(f"{source}: score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise RowError(f"{source}: score {value!r} is not a finite number")
    if task.score_range is not None:
        low, high = task.score_range
        if not low <= score <= high:
            raise RowError(
                f"{source}: score {value!r} is outside {task.name}'s range {low:g} to {high:g}"
            )
    return score


def clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------- writing


def label_text(label: str | float | None) -> str:
    """A label as written to a file: a class name as is, a score exactly (repr: 3.8 -> '3.8')."""
    if label is None:
        raise ValueError("label_text: an unlabelled example cannot be written as training data")
    return label if isinstance(label, str) else repr(float(label))


def tsv_field(text: str, source: str) -> str:
    """A text for a tab-separated line; a tab or line break in it would shift or split the row."""
    if "\t" in text or "\n" in text:
        raise UserError(f"{source}: the text holds a tab or line break; TSV cannot hold it")
    return text
