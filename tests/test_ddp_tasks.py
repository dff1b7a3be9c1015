"""Task runs under DDP (2 processes, gloo) equal one process: token tasks (CLUENER) averaged over
the global batch's scored tokens, and phase 2's teacher logits computed shard by shard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tinybert.recipes.task_distill as task_distill
from tinybert.cli import main

from .test_clue import write_jsonl, write_zh_vocab
from .test_clue_train import ner_rows
from .test_general import cli, finish

pytestmark = pytest.mark.slow  # every test here starts two processes (torchrun)


def assert_same_weights(a: Path, b: Path) -> None:
    one, two = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=0, msg=key)


@pytest.fixture(autouse=True)
def one_thread():
    """The in-process 1-process runs use one thread, as the torchrun children do
    (OMP_NUM_THREADS=1): then both sum in the same order, whatever an earlier test set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def count_teacher_logits(monkeypatch) -> list[int]:
    """Counts phase 2's calls of the teacher-logits pass (in this process)."""
    calls: list[int] = []
    real = task_distill.teacher_logits

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(task_distill, "teacher_logits", counted)
    return calls


def test_token_task_ddp_equals_one_process(tmp_path, capsys):
    """finetune and phase 2 on CLUENER: the two processes' slices hold different numbers of
    scored tokens (5-row batches split 3 + 2, sentences of varied length), the last batch (21 =
    4 * 5 + 1) leaves process 1 nothing, and accumulation runs under no_sync."""
    vocab = write_zh_vocab(tmp_path / "zh-vocab") / "vocab.txt"
    base = tmp_path / "zh-base"
    shape = [
        "student.num_hidden_layers=2",
        "student.hidden_size=32",
        "student.num_attention_heads=4",
        "student.intermediate_size=37",
        "student.dropout=0.0",  # the fine-tuned teacher inherits it: no per-process masks
    ]
    assert main(["init-model", f"--vocab={vocab}", f"--output={base}", *shape]) == 0
    data = tmp_path / "cluener"
    write_jsonl(data / "train.json", ner_rows(21, 0))
    write_jsonl(data / "dev.json", ner_rows(6, 1))
    args = [
        "task.name=cluener",
        f"task.data_dir={data}",
        "task.max_seq_length=32",
        "device=cpu",
        f"model={base}",
        f"teacher={tmp_path / 'one/teacher/best'}",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "student.dropout=0.0",
        "distill.phases=[prediction]",
        *[
            f"{stage}.{k}"
            for stage in ("finetune", "prediction")
            for k in ("epochs=2", "batch_size=5", "grad_accum=2", "lr=5e-3", "eval_batch_size=4")
        ],
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["finetune", *args, f"output_dir={one}"]) == 0
    finish(cli("finetune", *args, f"output_dir={two}", torchrun=2))
    assert_same_weights(one / "teacher/final", two / "teacher/final")

    assert main(["task-distill", *args, f"output_dir={one}"]) == 0
    out = finish(cli("task-distill", *args, f"output_dir={two}", torchrun=2))
    assert_same_weights(one / "student/prediction/final", two / "student/prediction/final")
    # Each process ran the teacher over its own rows only (21 = 11 + 10).
    assert "process 0 ran the teacher on 11 of 21 rows" in out
    assert "process 1 ran the teacher on 10 of 21 rows" in out


def test_sequence_task_phase2_shards_teacher_logits_and_skips_when_finished(
    tmp_path, tiny_bert_dir, sst2_dir, monkeypatch, capsys
):
    """SST-2 phase 2: the (N, C) cache gathered from 2 processes' shards gives one process's
    weights; a finished phase 2, resumed (resume=auto), never runs the teacher's pass."""
    args = [
        f"model={tiny_bert_dir}",
        f"task.data_dir={sst2_dir}",
        "task.max_seq_length=16",
        "device=cpu",
        f"teacher={tmp_path / 'one/teacher/best'}",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "student.dropout=0.0",
        "distill.phases=[prediction]",
        "finetune.epochs=1",
        "prediction.epochs=1",
        "prediction.batch_size=7",
        "prediction.eval_batch_size=5",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["finetune", *args, f"output_dir={one}"]) == 0
    calls = count_teacher_logits(monkeypatch)
    assert main(["task-distill", *args, f"output_dir={one}"]) == 0
    assert len(calls) == 1
    out = finish(cli("task-distill", *args, f"output_dir={two}", torchrun=2))
    assert_same_weights(one / "student/prediction/final", two / "student/prediction/final")
    assert "process 0 ran the teacher on 24 of 48 rows" in out
    assert "process 1 ran the teacher on 24 of 48 rows" in out

    capsys.readouterr()
    assert main(["task-distill", *args, f"output_dir={one}", "resume=auto"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert len(calls) == 1  # the skipped phase never computed the teacher's logits
