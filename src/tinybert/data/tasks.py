"""The task registry: every task name maps to the reader of its file format.

    task = get_task("mnli")
    examples, n_skipped = read_examples(task, "glue/MNLI/dev_matched.tsv")

Readers (one module each, sharing the helpers of base.py): GLUE TSV (glue.py), CLUE JSON lines
(clue.py), and your own JSONL / CSV (generic.py). The seed's TFRecord datasets are a data_dir
format rather than a task (tfrecord.py, chosen in task_data.py). Every problem is reported as
"path:line: what is wrong (value ...)"; with on_error="skip" bad rows are dropped and counted
instead (QQP's train.tsv has a few rows with missing columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tinybert.data import clue, generic, glue
from tinybert.data.base import Example, OnError, Reader, RowError, Rows, TaskSpec
from tinybert.errors import UserError

_READERS: dict[str, Reader] = {
    name: reader for reader in (glue.READER, clue.READER, generic.READER) for name in reader.names
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
    """Read one split file of `task`. Returns (examples, n_skipped).

    A malformed row (wrong column count, empty text, unknown label, bad score) raises
    UserError("path:line: ...") with on_error="raise", or is dropped and counted with "skip".
    Problems with the file as a whole (missing, wrong header) always raise.
    """
    if on_error not in ("raise", "skip"):
        raise UserError(f"on_bad_row must be 'raise' or 'skip', got {on_error!r}")
    if task.name not in _READERS:
        raise UserError(f"unknown task {task.name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    reader, path = _READERS[task.name], Path(path)
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "not found"
        raise UserError(f"{path}: {state}; expected {reader.describe(task)}")
    examples, skipped = _collect(reader.rows(task, path), on_error)
    if not examples:
        raise UserError(f"{path}: no usable examples ({skipped} bad rows skipped)")
    return examples, skipped


def _collect(rows: Rows, on_error: OnError) -> tuple[list[Example], int]:
    """Keep good rows; raise on (or count) the bad ones."""
    examples, skipped = [], 0
    for row in rows:
        if isinstance(row, Example):
            examples.append(row)
        elif on_error == "skip":
            skipped += 1
        else:
            assert isinstance(row, RowError)
            raise UserError(f"{row}{_SKIP_HINT}")
    return examples, skipped
