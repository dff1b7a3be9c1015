"""End to end on tiny models: fine-tune, both TD phases, evaluate, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinybert.cli import main
from tinybert.config import TrainConfig, load_config
from tinybert.distill import objectives
from tinybert.errors import UserError
from tinybert.recipes.finetune import run_finetune
from tinybert.train.loop import StageContext, TrainData, Trainer
from tinybert.train.objective import FunctionObjective

from .conftest import TINY, majority_rate


def overrides(tmp_path: Path, bert: Path, sst2: Path) -> list[str]:
    return [
        f"model={bert}",
        f"teacher={tmp_path / 'out/teacher/best'}",
        f"output_dir={tmp_path / 'out'}",
        f"task.data_dir={sst2}",
        "task.max_seq_length=16",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        f"student.num_attention_heads={TINY['num_attention_heads']}",
        "student.intermediate_size=24",
        "finetune.epochs=16",
        "finetune.batch_size=8",
        "finetune.lr=3e-3",
        "finetune.eval_steps=24",
        "finetune.save_steps=24",
        "intermediate.epochs=1",
        "intermediate.batch_size=8",
        "prediction.epochs=2",
        "prediction.batch_size=8",
        "prediction.lr=1e-3",
        "prediction.eval_steps=5",
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # trains to learn: the fast set has test_general's finetune -> task-distill
def test_finetune_distill_evaluate_end_to_end(tmp_path, tiny_bert_dir, sst2_dir, capsys):
    args = overrides(tmp_path, tiny_bert_dir, sst2_dir)
    assert main(["finetune", *args]) == 0
    teacher = tmp_path / "out/teacher"
    assert (teacher / "best/model.safetensors").is_file() and (teacher / "final").is_dir()
    assert [p.name for p in sorted(teacher.glob("checkpoint-*"))] == [
        "checkpoint-72",
        "checkpoint-96",
    ]
    log = read_jsonl(teacher / "metrics.jsonl")
    evals = [r["eval"]["accuracy"] for r in log if "eval" in r]
    assert len(evals) == 16 and max(evals) >= 0.9  # the sentiment word decides the label
    assert "best accuracy = " in capsys.readouterr().out

    # Phase 2 long enough for the 1-layer, hidden-16 student to learn from the teacher's logits
    # (96 steps; seeds 0-7 all reach dev accuracy >= 0.875, the default seed 1.0).
    distill = ["prediction.epochs=16", "prediction.lr=1e-2"]
    assert main(["task-distill", *args, *distill]) == 0
    student = tmp_path / "out/student"
    assert (student / "intermediate/final/model.safetensors").is_file()
    assert (student / "prediction/best/config.json").is_file()
    phase1 = read_jsonl(student / "intermediate/metrics.jsonl")
    assert {"att_loss", "hid_loss", "emb_loss"} <= set(phase1[0])

    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", *args, f"--model={student / 'prediction/best'}", f"--output={out}"]) == 0
    )
    result = json.loads(out.read_text())
    assert result["task"] == "sst2" and result["n_examples"] == 16  # every dev example counts
    # the student learned the task: well above always answering the commoner label (0.5)
    assert result["accuracy"] >= majority_rate(sst2_dir / "dev.tsv") + 0.2


def test_transformers_loads_the_student(tmp_path, tiny_bert_dir, sst2_dir):
    import transformers  # a dev dependency: missing, the test fails rather than skips

    args = overrides(tmp_path, tiny_bert_dir, sst2_dir)
    assert main(["finetune", *args, "finetune.epochs=1"]) == 0
    assert main(["task-distill", *args, "distill.phases=[prediction]"]) == 0
    best = tmp_path / "out/student/prediction/best"
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        best, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.id2label == {0: "0", 1: "1"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_resume_equals_uninterrupted_run(tmp_path, tiny_bert_dir, sst2_dir):
    """Kill-and-resume at a checkpoint gives bit-identical final weights (18 steps, evaluated
    every 6: the best model is tracked across the resume too)."""
    base = [*overrides(tmp_path, tiny_bert_dir, sst2_dir), "finetune.epochs=3"]
    base.append("finetune.eval_steps=6")
    full = [*base, f"output_dir={tmp_path / 'full'}", "finetune.save_steps=5"]
    assert main(["finetune", *full]) == 0
    # A second run is cut in step 12 (as by a third Ctrl-C: nothing of step 12 is saved), then
    # resumed from its newest checkpoint, checkpoint-10.
    part = [*base, f"output_dir={tmp_path / 'part'}", "finetune.save_steps=5"]
    _run_and_interrupt(load_config([], part), stop_after=12)
    assert main(["finetune", *part, "resume=auto"]) == 0
    a, b = _weights(tmp_path / "full/teacher/final"), _weights(tmp_path / "part/teacher/final")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _run_and_interrupt(cfg, stop_after: int) -> None:
    """Run fine-tuning but raise KeyboardInterrupt in step `stop_after` (mid-step, as a third
    Ctrl-C does: see test_resume.py for the signals themselves)."""
    calls = {"n": 0}
    original = objectives.SupervisedLoss.__call__

    def interrupting(self, batch):
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise KeyboardInterrupt
        return original(self, batch)

    objectives.SupervisedLoss.__call__ = interrupting
    try:
        with pytest.raises(UserError, match="interrupted during step 12, which was not saved"):
            run_finetune(cfg)
    finally:
        objectives.SupervisedLoss.__call__ = original


def test_grad_accumulation_matches_bigger_batch(tmp_path):
    """2 micro-batches of 4 accumulate to the same update as one batch of 8 (no dropout)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16)

    def run(batch_size: int, accum: int) -> torch.Tensor:
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 1)
        cfg = TrainConfig(
            epochs=1, batch_size=batch_size, grad_accum=accum, lr=0.1, group_by_length=False
        )

        def loss_fn(b):  # inputs x ride in input_ids, targets y in labels
            return (((model(b.input_ids).squeeze(-1) - b.labels) ** 2).mean(), {})

        def collate(idx):
            none = torch.zeros(len(idx), 1)
            return {
                "input_ids": x[idx],
                "attention_mask": none,
                "token_type_ids": none,
                "labels": y[idx],
            }

        trainer = Trainer(
            cfg,
            StageContext(tmp_path, torch.device("cpu"), save_model=lambda m, d: None),
            "unused",
            model=model,
            loss_fn=FunctionObjective(loss_fn),
            data=TrainData([1] * 16, collate),
        )
        torch.manual_seed(trainer.seed)  # as fit does for a fresh run
        from tinybert.data import batch_order

        order = batch_order([1] * 16, batch_size, True, 42, 0, False)
        for start in range(0, len(order), accum):
            trainer._step(order[start : start + accum])
        return model.weight.detach().clone()

    assert torch.allclose(run(8, 1), run(4, 2), atol=1e-6)


def test_bad_task_and_missing_teacher_are_clear_errors(tmp_path, tiny_bert_dir, sst2_dir, capsys):
    args = overrides(tmp_path, tiny_bert_dir, sst2_dir)
    assert main(["finetune", *args, "task.name=sst3"]) == 2
    assert "sst3" in capsys.readouterr().err
    assert main(["task-distill", *args, f"teacher={tmp_path / 'nothing'}"]) == 2
    assert "nothing" in capsys.readouterr().err
    assert main(["finetune", *args, "finetune.lrr=1"]) == 2
    assert "finetune.lrr" in capsys.readouterr().err
    # A bare encoder is no teacher: its task head would be untrained.
    assert main(["task-distill", *args, f"teacher={tiny_bert_dir}"]) == 2
    assert "fine-tune it first" in capsys.readouterr().err


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("task", "folder", "keys"),
    [
        ("mnli", "glue/MNLI", {"dev_matched/accuracy", "dev_mismatched/accuracy"}),
        ("stsb", "glue/STS-B", {"pearson", "spearman"}),
        ("cola", "glue/CoLA", {"mcc"}),
        ("mrpc", "glue/MRPC", {"accuracy", "f1"}),
    ],
)
def test_every_task_shape_trains_and_evaluates(tmp_path, tiny_bert_dir, task, folder, keys):
    """Multi-split (MNLI), regression (STS-B) and MCC/F1 tasks run through finetune + evaluate."""
    args = [
        f"model={tiny_bert_dir}",
        f"output_dir={tmp_path / 'out'}",
        f"task.name={task}",
        f"task.data_dir={FIXTURES / folder}",
        "task.max_seq_length=32",
        "finetune.epochs=1",
        "finetune.batch_size=2",
    ]
    assert main(["finetune", *args]) == 0
    best = tmp_path / "out/teacher/best"
    out = tmp_path / "eval.json"
    assert main(["evaluate", *args, f"--model={best}", f"--output={out}"]) == 0
    result = json.loads(out.read_text())
    assert keys <= set(result)
    if task == "stsb":
        assert json.loads((best / "config.json").read_text())["problem_type"] == "regression"


def test_tokenizer_bigger_than_model_vocab_is_an_error(tmp_path, tiny_bert_dir, sst2_dir, capsys):
    vocab = tiny_bert_dir / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extra1\nextra2\n")
    args = overrides(tmp_path, tiny_bert_dir, sst2_dir)
    assert main(["finetune", *args]) == 2
    assert "do not belong together" in capsys.readouterr().err
