"""The seed system's datasets: TFRecord files of tf.train.Example plus a schema.json.

    schema.json: {"datasetType": "TF", "numRows": N,
                  "columns": {"input_ids": {"type": "int64", "rank": 1, "shape": [128]},
                              "input_mask": ..., "segment_ids": ..., "label_ids": ...}}

Every record is checked against the schema as it is read: a column the schema promises but the
record lacks, a value of the wrong length, a truncated or corrupt file is one `UserError` naming
the file and the record number. Parsing is done by the `tfrecord` package (PyPI).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tfrecord.reader import tfrecord_loader

from tinybert.errors import UserError

if TYPE_CHECKING:
    from tinybert.data.tokenization import TaskDataset

SCHEMA_FILE = "schema.json"
PRETRAIN_COLUMNS = ("input_ids", "input_mask", "segment_ids")
TASK_COLUMNS = (*PRETRAIN_COLUMNS, "label_ids")


@dataclass(frozen=True)
class Column:
    type: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Schema:
    path: Path
    num_rows: int | None
    columns: dict[str, Column]


def is_tfrecord_dir(path: str | Path) -> bool:
    return (Path(path) / SCHEMA_FILE).is_file()


def read_schema(path: str | Path) -> Schema:
    """Read and check `schema.json` (a folder holding it, or the file itself)."""
    path = Path(path)
    file = path / SCHEMA_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file}: schema not found; a TFRecord dataset needs {SCHEMA_FILE}")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        columns = {
            name: Column(spec["type"], tuple(int(d) for d in spec.get("shape", [])))
            for name, spec in raw["columns"].items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(
            f"{file}: not a valid schema ({type(e).__name__}: {e}); expected "
            '{"numRows": N, "columns": {"input_ids": {"type": "int64", "shape": [128]}, ...}}'
        ) from None
    bad = [n for n, c in columns.items() if c.type != "int64"]
    if bad:
        raise UserError(f"{file}: columns {bad} are not int64; only int64 features are supported")
    return Schema(file, raw.get("numRows"), columns)


def read_records(
    files: list[Path], schema: Schema, required: tuple[str, ...], whole: bool = True
) -> dict[str, np.ndarray]:
    """Read every record of `files` (in order) into arrays {column: (N, *shape) int32}.

    `whole`: the files are the whole dataset, so their record count must be schema's numRows.
    """
    missing = [c for c in required if c not in schema.columns]
    if missing:
        raise UserError(
            f"{schema.path}: column(s) {missing} missing; this dataset needs {list(required)}"
        )
    if not files:
        raise UserError(f"{schema.path.parent}: no *.tfrecord files next to {SCHEMA_FILE}")
    rows: dict[str, list[np.ndarray]] = {c: [] for c in required}
    for file in files:
        _read_file(file, schema, required, rows)
    n = len(rows[required[0]])
    if whole and schema.num_rows is not None and n != schema.num_rows:
        raise UserError(
            f"{schema.path}: numRows is {schema.num_rows} but the files hold {n} records "
            f"({', '.join(f.name for f in files)}); a file is missing or truncated"
        )
    return {c: np.stack(v).astype(np.int32) for c, v in rows.items()}


def _read_file(file: Path, schema: Schema, required: tuple[str, ...], rows: dict) -> None:
    record = 0  # index of the record being read
    try:
        # description=None: parse every feature, so a missing column is reported as such.
        for example in tfrecord_loader(str(file), None, None):
            for c in required:
                rows[c].append(_check(example.get(c), schema.columns[c], file, record, c))
            record += 1
    except UserError:
        raise
    except Exception as e:  # truncated file (RuntimeError), corrupt bytes (DecodeError), ...
        raise UserError(
            f"{file}: record {record}: cannot be read ({type(e).__name__}: {e}); "
            "the file is truncated or corrupt"
        ) from None


def _check(value: Any, column: Column, file: Path, record: int, name: str) -> np.ndarray:
    if value is None:
        raise UserError(f"{file}: record {record}: column '{name}' is missing")
    value = np.asarray(value)
    if value.size != column.size:
        raise UserError(
            f"{file}: record {record}: column '{name}' has {value.size} values, the schema says "
            f"shape {list(column.shape)}"
        )
    return value.reshape(column.shape)


def tfrecord_files(folder: Path, stem: str | None = None) -> list[Path]:
    """*.tfrecord files in `folder` (those starting with `stem` if given), sorted."""
    pattern = f"{stem}*.tfrecord" if stem else "*.tfrecord"
    return sorted(Path(folder).glob(pattern))


def read_pretraining(folder: str | Path) -> dict[str, np.ndarray]:
    """A seed GD dataset: {input_ids, input_mask, segment_ids} (N, L) from folder/*.tfrecord."""
    schema = read_schema(folder)
    return read_records(tfrecord_files(Path(folder)), schema, PRETRAIN_COLUMNS)


def read_task_split(folder: str | Path, split: str) -> dict[str, np.ndarray]:
    """A seed task split (e.g. "train", "dev"): folder/<split>*.tfrecord, with label_ids."""
    schema = read_schema(folder)
    files = tfrecord_files(Path(folder), split)
    if not files:
        raise UserError(f"{folder}: no {split}*.tfrecord file for the {split} split")
    # numRows counts the whole folder, not one split, so it is not checked here.
    return read_records(files, schema, TASK_COLUMNS, whole=False)


def segment_lengths(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(real length, length of "[CLS] A [SEP]") per row, from input_mask and segment_ids."""
    mask, seg = arrays["input_mask"] != 0, arrays["segment_ids"] != 0
    lengths = mask.sum(axis=1)
    has_b = (seg & mask).any(axis=1)
    len_a = np.where(has_b, np.argmax(seg & mask, axis=1), lengths)
    return lengths.astype(np.int64), len_a.astype(np.int64)


def task_dataset(
    folder: str | Path, split: str, num_labels: int, vocab_size: int | None = None
) -> TaskDataset:
    """A seed task split as a TaskDataset: real tokens only (the seed's padding is dropped).

    label_ids are class indices in the task's label order; one outside 0..num_labels-1, or a
    token id outside the vocabulary, is an error naming the record.
    """
    from tinybert.data.tokenization import TaskDataset

    arrays = read_task_split(folder, split)
    lengths, _ = segment_lengths(arrays)
    mask = np.arange(arrays["input_ids"].shape[1])[None, :] < lengths[:, None]
    labels = arrays["label_ids"].reshape(len(lengths), -1)[:, 0]
    where = f"{folder}/{split}*.tfrecord"
    bad = np.flatnonzero((labels < 0) | (labels >= num_labels))
    if len(bad):
        raise UserError(
            f"{where}: record {bad[0]}: label_ids {labels[bad[0]]} is not a class index "
            f"0..{num_labels - 1} of this task"
        )
    if vocab_size is not None and (arrays["input_ids"][mask] >= vocab_size).any():
        row = int(np.flatnonzero(((arrays["input_ids"] >= vocab_size) & mask).any(axis=1))[0])
        raise UserError(
            f"{where}: record {row}: a token id is outside the teacher's vocabulary of "
            f"{vocab_size}; the data was made with another vocabulary"
        )
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TaskDataset(
        ids=arrays["input_ids"][mask].astype(np.int32),
        type_ids=arrays["segment_ids"][mask].astype(np.int8),
        offsets=offsets,
        labels=labels.astype(int).tolist(),
        lengths=lengths.tolist(),
    )
