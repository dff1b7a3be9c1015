"""The task registry: every task name maps to the reader of its file format.

    task = get_task("mnli")
    examples, n_skipped = read_examples(task, "glue/MNLI/dev_matched.tsv")

Readers (one module each, sharing the helpers of base.py): GLUE TSV (glue.py), CLUE JSON lines
(clue.py), SICK (sick.py), and your own JSONL / CSV (generic.py). The seed's TFRecord datasets
are a data_dir format rather than a task (tfrecord.py, chosen in task_data.py). Every problem is reported as
"path:line: what is wrong (value ...)"; with on_error="skip" bad rows are dropped and counted
instead (QQP's train.tsv has a few rows with missing columns). `ExampleStream` reads a file one
example at a time; `row_writer` writes examples back in a task's own format (`tinybert augment`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from tinybert.data import clue, generic, glue, sick
from tinybert.data.base import (
    BlankLine,
    Example,
    OnError,
    Reader,
    TaskSpec,
    WriteRow,
    split_source,
)
from tinybert.errors import UserError

_READERS: dict[str, Reader] = {
    name: reader
    for reader in (glue.READER, clue.READER, sick.READER, generic.READER)
    for name in reader.names
}
KNOWN_TASKS = tuple(_READERS)
_SKIP_HINT = " (fix the row, or set task.on_bad_row=skip to drop bad rows)"


def get_task(name: str, labels: Sequence[str] | None = None, regression: bool = False) -> TaskSpec:
    """Look up a task by name ("sst2", "SST-2", "mnli", ..., "tnews", "jsonl", "csv").

    GLUE and CLUE tasks have fixed labels. The generic jsonl/csv tasks take the class names in
    index order via `labels`, or `regression=True` (a float score per row) instead.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _READERS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    return _READERS[key].spec(key, labels, regression)


def read_examples(
    task: TaskSpec, path: str | Path, on_error: OnError = "raise"
) -> tuple[list[Example], int]:
    """Read one split file of `task`. Returns (examples, n_skipped): the rows left out, blank
    lines included.

    A malformed row (wrong column count, empty text, unknown label, bad score) raises
    UserError("path:line: ...") with on_error="raise", or is dropped and counted with "skip".
    A blank line is always dropped and counted. Problems with the file as a whole (missing,
    wrong header) always raise.
    """
    stream = ExampleStream(task, path, on_error)
    examples = list(stream)
    return examples, stream.skipped + stream.blank


class ExampleStream:
    """read_examples one example at a time, for files too large to hold (flat memory).

    Iterate once; afterwards `skipped` counts the bad rows dropped with on_error="skip" and
    `blank` the blank lines (always dropped); `notice()` says so in one line. The file is
    checked when the stream is made; an empty result raises at the end, as in read_examples.
    """

    def __init__(self, task: TaskSpec, path: str | Path, on_error: OnError = "raise"):
        if on_error not in ("raise", "skip"):
            raise UserError(f"on_bad_row must be 'raise' or 'skip', got {on_error!r}")
        self.task, self.path, self.on_error = task, Path(path), on_error
        self.reader = _reader(task)
        file = split_source(self.path)[0]
        if not file.is_file():
            state = "is a directory" if file.is_dir() else "not found"
            raise UserError(f"{file}: {state}; expected {self.reader.describe(task)}")
        self.skipped = 0
        self.blank = 0

    def __iter__(self) -> Iterator[Example]:
        kept = 0
        for row in self.reader.rows(self.task, self.path):
            if isinstance(row, Example):
                kept += 1
                yield row
            elif isinstance(row, BlankLine):
                self.blank += 1
            elif self.on_error == "skip":
                self.skipped += 1
            else:
                raise UserError(f"{row}{_SKIP_HINT}")
        if not kept:
            raise UserError(f"{self.path}: no usable examples ({self._left_out()} skipped)")

    def notice(self) -> str | None:
        """'path: skipped 2 blank lines and 1 malformed row (task.on_bad_row=skip)', or None
        when nothing was left out."""
        if not (self.skipped or self.blank):
            return None
        why = " (task.on_bad_row=skip)" if self.skipped else ""
        return f"{self.path}: skipped {self._left_out()}{why}"

    def _left_out(self) -> str:
        parts = [_count(self.blank, "blank line")] if self.blank else []
        if self.skipped or not self.blank:
            parts.append(_count(self.skipped, "malformed row"))
        return " and ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def row_writer(task: TaskSpec, f: TextIO) -> WriteRow:
    """A function writing one Example a call to `f` (a text file opened with newline="") in
    `task`'s own file format (header first), so that read_examples reads it back."""
    reader = _reader(task)
    if reader.write is None:
        raise UserError(f"task {task.name!r}: its file format cannot be written")
    return reader.write(task, f)


def _reader(task: TaskSpec) -> Reader:
    if task.name not in _READERS:
        raise UserError(f"unknown task {task.name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    return _READERS[task.name]
