"""Units of the training loop: parameter groups, schedule, atomic checkpoints, rotation."""

from __future__ import annotations

import pytest
import torch

from tinybert.config import TrainConfig
from tinybert.train import checkpoint as ckpt
from tinybert.train.optim import linear_schedule, param_groups


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(4, 4)
        self.LayerNorm = torch.nn.LayerNorm(4)


def test_no_weight_decay_on_bias_and_layernorm():
    block = Block()
    decay, no_decay = param_groups([block], weight_decay=0.01)
    assert decay["params"] == [block.dense.weight] and decay["weight_decay"] == 0.01
    assert {id(p) for p in no_decay["params"]} == {
        id(block.dense.bias),
        id(block.LayerNorm.weight),
        id(block.LayerNorm.bias),
    }
    assert no_decay["weight_decay"] == 0.0


def test_linear_warmup_then_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, total_steps=10, warmup_ratio=0.2)  # 2 warm-up steps
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] == pytest.approx(1 / 8)


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "best"
    ckpt.write_atomic(target, lambda d: (d / "a.txt").write_text("1"))
    ckpt.write_atomic(target, lambda d: (d / "a.txt").write_text("2"))
    assert (target / "a.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    target = tmp_path / "best"
    ckpt.write_atomic(target, lambda d: (d / "a.txt").write_text("good"))

    def crash(d):
        (d / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.write_atomic(target, crash)
    assert (target / "a.txt").read_text() == "good"


def test_rotation_keeps_newest_complete_checkpoints(tmp_path):
    for step in (5, 10, 15, 20):
        ckpt.write_atomic(tmp_path / f"checkpoint-{step}", lambda d: ckpt.save_state(d, {"s": 1}))
    (tmp_path / "checkpoint-25").mkdir()  # incomplete: no state file, never picked for resume
    ckpt.rotate(tmp_path, keep=2)
    assert [p.name for p in ckpt.step_checkpoints(tmp_path)] == ["checkpoint-15", "checkpoint-20"]


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    from tinybert.errors import UserError
    from tinybert.train.loop import StageContext, TrainData, Trainer
    from tinybert.train.objective import FunctionObjective

    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        Trainer(
            TrainConfig(precision="fp16"),
            StageContext(tmp_path, torch.device("cpu"), save_model=lambda m, d: None),
            "stage",
            model=torch.nn.Linear(2, 2),
            loss_fn=FunctionObjective(lambda b: (torch.zeros(()), {})),
            data=TrainData([1], lambda i: {}),
        )


def test_overflowing_fp16_steps_are_skipped_and_counted(tmp_path):
    """The loss-scaling path (as fp16 runs it on a GPU), driven on CPU: a step whose scaled
    gradients overflow leaves the weights alone, halves the scale and is counted in the log."""
    import json

    from tinybert.train.loop import StageContext, TrainData, Trainer
    from tinybert.train.objective import FunctionObjective

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    inputs = [1.0, 1e35, 1.0]  # step 2: the loss is finite, loss x scale (2^16) is not

    def loss_fn(batch):
        return model(torch.tensor([[inputs[int(batch.index[0])]]])).sum(), {}

    def collate(idx):  # the row number rides in index
        one = torch.ones(len(idx), 1, dtype=torch.long)
        return {
            "input_ids": one,
            "attention_mask": one,
            "token_type_ids": one,
            "index": torch.tensor(idx),
        }

    cfg = TrainConfig(
        epochs=1,
        batch_size=1,
        lr=0.1,
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=0.0,
        log_steps=1,
        group_by_length=False,
    )
    trainer = Trainer(
        cfg,
        StageContext(tmp_path, torch.device("cpu"), save_model=lambda m, d: None),
        "",
        model=model,
        loss_fn=FunctionObjective(loss_fn),
        data=TrainData([1, 1, 1], collate),
    )
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer._finish = lambda: None  # no model directory to write for a bare Linear
    # Visit the batches in order: step 2 is the overflowing one.
    trainer._groups_left_in_epoch = lambda: iter([[[0]], [[1]], [[2]]][trainer.pos.batch :])
    trainer.fit()
    assert trainer.skipped_steps == 1
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["skipped_steps"], r["loss_scale"]) for r in log] == [
        (0, 2.0**16),
        (1, 2.0**15),
        (1, 2.0**15),
    ]
    # Adam moves a weight by ~lr per real step; the lr decays 0.1, 0.067 (skipped), 0.033.
    assert model.weight.item() == pytest.approx(1 - 0.1 - 0.1 / 3, abs=1e-4)


def test_batch_from_collated_rows_and_its_global_counts():
    """The loop's Batch: model inputs, labels and index from collated rows (a corpus has
    neither); the row share is 1 unless the loop gave the global batch's row count."""
    from dataclasses import replace

    from tinybert.train.objective import Batch

    ids = torch.ones(2, 3, dtype=torch.long)
    rows = {"input_ids": ids, "attention_mask": ids, "token_type_ids": ids * 0}
    corpus = Batch.from_rows(rows)
    assert corpus.labels is None and corpus.index is None and corpus.row_share() == 1.0
    assert set(corpus.inputs()) == {"input_ids", "attention_mask", "token_type_ids"}
    with pytest.raises(ValueError, match="no labels"):
        corpus.require_labels()
    task = Batch.from_rows({**rows, "labels": torch.tensor([0, 1]), "index": torch.tensor([5, 7])})
    assert task.require_index().tolist() == [5, 7]
    slice_ = replace(task, norm_rows=torch.tensor(8.0)).to(torch.device("cpu"))
    assert float(slice_.row_share()) == 0.25  # 2 of the global batch's 8 rows
    assert slice_.labels is not None and slice_.norm_tokens is None
