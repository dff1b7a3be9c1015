"""The seed's TFRecord + schema.json datasets, read for general and for task distillation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tfrecord.writer import TFRecordWriter

from tinybert.cli import main
from tinybert.config import load_config
from tinybert.data.corpus import CorpusDataset, open_corpus
from tinybert.data.task_data import load_task_data
from tinybert.errors import UserError

SEQ = 16


def seed_rows(n: int, seed: int, labels: bool) -> list[dict]:
    """Rows as the seed wrote them: [CLS] A [SEP] B [SEP] padded to SEQ, int64 features."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        len_a, len_b = int(rng.integers(1, 6)), int(rng.integers(0, 6))
        body = [2, *rng.integers(5, 40, len_a), 3] + (
            [*rng.integers(5, 40, len_b), 3] if len_b else []
        )
        pad = SEQ - len(body)
        types = [0] * (len_a + 2) + [1] * (len(body) - len_a - 2)
        row = {
            "input_ids": body + [0] * pad,
            "input_mask": [1] * len(body) + [0] * pad,
            "segment_ids": types + [0] * pad,
        }
        if labels:
            row["label_ids"] = [i % 2]
        rows.append(row)
    return rows


def write_seed_dataset(folder: Path, files: dict[str, list[dict]], schema_rows: int | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        c: {"type": "int64", "rank": 1, "shape": [SEQ]} for c in next(iter(files.values()))[0]
    }
    if "label_ids" in columns:
        columns["label_ids"]["shape"] = [1]
    n = sum(len(r) for r in files.values())
    schema = {
        "datasetType": "TF",
        "numRows": n if schema_rows is None else schema_rows,
        "columns": columns,
    }
    (folder / "schema.json").write_text(json.dumps(schema))
    for name, rows in files.items():
        writer = TFRecordWriter(str(folder / name))
        for row in rows:
            writer.write({k: (v, "int") for k, v in row.items()})
        writer.close()
    return folder


def test_gd_reads_tfrecord_folder(tmp_path, tiny_bert_dir):
    rows = seed_rows(10, 0, labels=False)
    folder = write_seed_dataset(
        tmp_path / "gd", {"part-0.tfrecord": rows[:6], "part-1.tfrecord": rows[6:]}
    )
    data = open_corpus(folder, tiny_bert_dir)
    assert len(data) == 10
    batch = data.collate(list(range(10)))
    width = max(sum(r["input_mask"]) for r in rows)
    for i, row in enumerate(rows):
        n = sum(row["input_mask"])
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"][:n]
        assert batch["token_type_ids"][i, :n].tolist() == row["segment_ids"][:n]
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)


def test_tfrecord_converts_to_shards_with_the_same_rows(tmp_path, tiny_bert_dir):
    folder = write_seed_dataset(tmp_path / "gd", {"a.tfrecord": seed_rows(9, 1, labels=False)})
    out = tmp_path / "prepared"
    assert (
        main(
            [
                "prepare-corpus",
                str(folder),
                "--tfrecord",
                f"--tokenizer={tiny_bert_dir}",
                f"--output={out}",
            ]
        )
        == 0
    )
    direct, converted = open_corpus(folder, tiny_bert_dir), CorpusDataset(out, tiny_bert_dir)
    rows = list(range(9))
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert (direct.collate(rows)[key] == converted.collate(rows)[key]).all()


def test_task_distillation_reads_tfrecord_splits(tmp_path, tiny_bert_dir):
    train, dev = seed_rows(12, 2, labels=True), seed_rows(5, 3, labels=True)
    folder = write_seed_dataset(tmp_path / "sst2", {"train.tfrecord": train, "dev.tfrecord": dev})
    cfg = load_config([], [f"task.data_dir={folder}", "task.name=sst2"]).task
    data = load_task_data(cfg, str(tiny_bert_dir), seed=0)
    assert len(data.train) == 12 and len(data.dev["dev"]) == 5
    item = data.train[3]
    n = sum(train[3]["input_mask"])
    assert item["input_ids"] == train[3]["input_ids"][:n] and item["label"] == 1
    assert item["token_type_ids"] == train[3]["segment_ids"][:n]

    limited = load_task_data(
        load_config([], [f"task.data_dir={folder}", "task.max_train_examples=4"]).task,
        str(tiny_bert_dir),
        seed=0,
    )
    assert len(limited.train) == 4


def _expect(folder: Path, match: str, tokenizer: Path) -> None:
    with pytest.raises(UserError, match=match):
        open_corpus(folder, tokenizer)


def test_missing_column_wrong_shape_and_row_count_are_clear_errors(tmp_path, tiny_bert_dir):
    rows = seed_rows(4, 0, labels=False)
    no_mask = [{k: v for k, v in r.items() if k != "input_mask"} for r in rows]
    folder = write_seed_dataset(tmp_path / "a", {"x.tfrecord": no_mask})
    _expect(folder, r"column\(s\) \['input_mask'\] missing", tiny_bert_dir)

    folder = write_seed_dataset(tmp_path / "b", {"x.tfrecord": rows})
    schema = json.loads((folder / "schema.json").read_text())
    schema["columns"]["input_mask"] = {"type": "int64", "rank": 1, "shape": [SEQ]}
    (folder / "schema.json").write_text(json.dumps(schema))
    bad = [dict(r) for r in rows]
    bad[2]["segment_ids"] = bad[2]["segment_ids"][:-1]
    write_seed_dataset(folder, {"x.tfrecord": bad})
    _expect(folder, r"x.tfrecord: record 2: column 'segment_ids' has 15 values", tiny_bert_dir)

    folder = write_seed_dataset(tmp_path / "c", {"x.tfrecord": rows}, schema_rows=7)
    _expect(folder, "numRows is 7 but the files hold 4 records", tiny_bert_dir)

    folder = write_seed_dataset(tmp_path / "d", {"x.tfrecord": rows})
    writer = TFRecordWriter(str(folder / "y.tfrecord"))  # a second file, its record short of one
    writer.write({k: (v, "int") for k, v in no_mask[0].items()})
    writer.close()
    _expect(folder, r"y.tfrecord: record 0: column 'input_mask' is missing", tiny_bert_dir)


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path, tiny_bert_dir):
    rows = seed_rows(6, 0, labels=False)
    folder = write_seed_dataset(tmp_path / "t", {"x.tfrecord": rows})
    data = (folder / "x.tfrecord").read_bytes()
    (folder / "x.tfrecord").write_bytes(data[: len(data) - 30])
    _expect(folder, r"x.tfrecord: record 5: cannot be read.*truncated or corrupt", tiny_bert_dir)

    folder = write_seed_dataset(tmp_path / "c", {"x.tfrecord": rows})
    raw = bytearray((folder / "x.tfrecord").read_bytes())
    raw[12:40] = b"\xff" * 28  # garbage where record 0's protobuf starts
    (folder / "x.tfrecord").write_bytes(bytes(raw))
    _expect(folder, r"x.tfrecord: record 0", tiny_bert_dir)

    (folder / "schema.json").write_text("{not json")
    _expect(folder, "schema.json: not a valid schema", tiny_bert_dir)


def test_task_labels_and_token_ids_are_checked(tmp_path, tiny_bert_dir):
    rows = seed_rows(4, 0, labels=True)
    rows[1]["label_ids"] = [5]
    folder = write_seed_dataset(
        tmp_path / "sst2", {"train.tfrecord": rows, "dev.tfrecord": rows[:1]}
    )
    cfg = load_config([], [f"task.data_dir={folder}"]).task
    with pytest.raises(UserError, match=r"train\*.tfrecord: record 1: label_ids 5"):
        load_task_data(cfg, str(tiny_bert_dir), seed=0)

    rows = seed_rows(4, 0, labels=False)
    rows[3]["input_ids"][1] = 10_000
    folder = write_seed_dataset(tmp_path / "gd", {"x.tfrecord": rows})
    _expect(folder, "token id 10000 is outside the teacher's vocabulary", tiny_bert_dir)


def test_token_task_tfrecord_data_is_refused(tmp_path, tiny_bert_dir):
    """The seed's NER records hold one tag per token: never read as one label per sentence."""
    rows = seed_rows(4, 0, labels=True)
    folder = write_seed_dataset(tmp_path / "ner", {"train.tfrecord": rows, "dev.tfrecord": rows})
    cfg = load_config([], [f"task.data_dir={folder}", "task.name=cluener"]).task
    with pytest.raises(UserError, match="TFRecord data is read for sentence.*train.json"):
        load_task_data(cfg, str(tiny_bert_dir), seed=0)
