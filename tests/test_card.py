"""Model cards (tinybert.report.card): built from the files of a run directory only, read back
by huggingface_hub's ModelCard with the right model-index numbers, and never written over a
README.md that tinybert did not write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import huggingface_hub as hub  # a dev dependency: missing, this file fails, not skips
import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from tinybert.config import (
    Config,
    DistillConfig,
    StudentConfig,
    TaskConfig,
    TrainConfig,
    dump_yaml,
)
from tinybert.report.card import MARKER, render_card, write_card, write_cards

SHAPE = dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200)
N_PARAMS = 3 * 4 + 5  # the tensors save_model_dir writes
TEACHER_EVAL = {
    "model": "run/teacher/best",
    "task": "sst2",
    "backend": "torch",
    "precision": "fp32",
    "accuracy": 0.8704128440366973,
    "n_examples": 872,
    "predicted_classes": 2,
    "skipped_rows": 0,
}
STUDENT_EVAL = {**TEACHER_EVAL, "model": "run/student/prediction/best", "accuracy": 0.8291}
MNLI_EVAL = {
    "model": "run/student/prediction/best",
    "task": "mnli",
    "backend": "torch",
    "precision": "fp32",
    "dev_matched/accuracy": 0.7712,
    "dev_matched/n_examples": 9815,
    "dev_matched/predicted_classes": 3,
    "dev_mismatched/accuracy": 0.7788,
    "dev_mismatched/n_examples": 9832,
    "dev_mismatched/predicted_classes": 3,
    "skipped_rows": 0,
}


# ---------------------------------------------------------------------------------------------
# Run directories in the real formats


def save_model_dir(path: Path, arch: str, labels: tuple[str, ...] = ("0", "1")) -> Path:
    """A saved model dir: HF config.json and a tiny model.safetensors (17 parameters)."""
    path.mkdir(parents=True)
    config = {"architectures": [arch], "model_type": "bert", "vocab_size": 30522, **SHAPE}
    config["id2label"] = {str(i): name for i, name in enumerate(labels)}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float32)}
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


def write_stage(stage: Path, cfg: Config, rows: list[dict], base_model: str = "") -> None:
    """A stage folder's config.yaml (`card.base_model` added when given) and metrics.jsonl."""
    data = yaml.safe_load(dump_yaml(cfg))
    if base_model:
        data.setdefault("card", {})["base_model"] = base_model
    (stage / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def rows(metric: str, values: dict[int, float], best: int) -> list[dict]:
    """metrics.jsonl rows: a training row, one eval row per step, and the done row."""
    out: list[dict] = [{"step": 20, "epoch": 0.1, "lr": 1e-5, "loss": 0.7}]
    out += [{"step": s, "eval": {metric: v, "n_examples": 872}} for s, v in values.items()]
    return out + [
        {"step": max(values), "done": True, "best_metric": values[best], "best_step": best}
    ]


def make_teacher(run: Path) -> Path:
    best = save_model_dir(run / "teacher" / "best", "BertForSequenceClassification")
    cfg = Config(
        task=TaskConfig(name="sst2", data_dir="data/SST-2", max_train_examples=2000),
        model="models/bert-base-uncased",
        output_dir=str(run),
        finetune=TrainConfig(epochs=2, batch_size=16, lr=2e-5, precision="bf16"),
    )
    write_stage(
        run / "teacher", cfg, rows("accuracy", {300: 0.86, 625: 0.87}, 625), "bert-base-uncased"
    )
    write_json(best / "eval_results.json", TEACHER_EVAL)
    return best


def make_general(run: Path) -> Path:
    final = save_model_dir(run / "general" / "final", "BertModel", ("LABEL_0", "LABEL_1"))
    cfg = Config(teacher="models/bert-base-uncased", output_dir=str(run))
    write_stage(run / "general", cfg, [{"step": 700, "done": True, "best_metric": None}])
    return final


def make_student(run: Path) -> Path:
    """TD phase 2 best/: GD-initialised, trained on an augmented file, evaluated, exported and
    benchmarked."""
    best = save_model_dir(run / "student" / "prediction" / "best", "BertForSequenceClassification")
    augmented = run / "augmented" / "train.tsv"
    augmented.parent.mkdir()
    augmented.write_text("sentence\tlabel\ngood\t1\n")
    write_json(Path(f"{augmented}.summary.json"), {"rows_in": 2000, "rows_out": 36284})
    cfg = Config(
        task=TaskConfig(name="sst2", data_dir="data/SST-2", train_file=str(augmented)),
        teacher=str(run / "teacher" / "best"),
        output_dir=str(run),
        student=StudentConfig(init="checkpoint", path=str(run / "general" / "final")),
        distill=DistillConfig(temperature=2.0, layer_map=(3, 6, 9, 12)),
    )
    write_stage(
        run / "student" / "prediction", cfg, rows("accuracy", {500: 0.81, 1000: 0.83}, 1000)
    )
    write_json(best / "eval_results.json", STUDENT_EVAL)
    pytorch = {"accuracy": 0.8291, "n_examples": 872}
    metrics = {"pytorch": pytorch, "model.onnx": pytorch, "model_int8.onnx": {"accuracy": 0.8245}}
    files = {"model.onnx": 57_000_000, "model_int8.onnx": 15_000_000, "config.json": 900}
    write_json(
        best / "onnx" / "export.json", {"head": "sequence", "files": files, "metrics": metrics}
    )
    results = [
        {"backend": "torch", "precision": "fp32", "batch_size": 1, "sequences_per_s": 120.5},
        {"backend": "onnx", "precision": "int8", "batch_size": 32, "sequences_per_s": 2400.25},
    ]
    speed = {"task": "sst2", "machine": "Test CPU, 2 cores", "threads": 2, "results": results}
    write_json(best / "speed.json", {**speed, "sequences": 256, "mean_tokens": 25.3})
    return best


def make_mnli_student(run: Path, prefix: str = "dev_matched") -> Path:
    """An MNLI student evaluated on both dev splits (keys "<split>/<metric>")."""
    best = save_model_dir(
        run / "student" / "prediction" / "best",
        "BertForSequenceClassification",
        ("contradiction", "entailment", "neutral"),
    )
    cfg = Config(
        task=TaskConfig(name="mnli"),
        teacher="nowhere/teacher",
        output_dir=str(run),
        student=StudentConfig(init="random"),
    )
    rows_ = rows("dev_matched/accuracy", {100: 0.76, 200: 0.77}, 200)
    write_stage(run / "student" / "prediction", cfg, rows_)
    other = prefix.replace("matched", "mismatched")
    renamed = {
        k.replace("dev_mismatched", other).replace("dev_matched", prefix): v
        for k, v in MNLI_EVAL.items()
    }
    write_json(best / "eval_results.json", renamed)
    return best


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    make_teacher(run)
    make_general(run)
    make_student(run)
    return run


def load(model_dir: Path):
    path = write_card(model_dir)
    assert path == model_dir / "README.md"
    return hub.ModelCard.load(path)


def metric_values(card) -> dict[tuple[str, str], float]:
    """(split, metric name) -> value, from the parsed model-index."""
    return {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}


# ---------------------------------------------------------------------------------------------
# Front matter and model-index, as the Hub's parser reads them


def test_teacher_card_parses_with_its_dev_results(run: Path) -> None:
    card = load(run / "teacher" / "best")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    assert {"tinybert", "knowledge-distillation", "sst2"} <= set(data["tags"])
    assert data["base_model"] == "bert-base-uncased"
    assert data["datasets"] == ["nyu-mll/glue"] and data["language"] == ["en"]
    assert metric_values(card) == {("validation", "accuracy"): TEACHER_EVAL["accuracy"]}
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config) == ("nyu-mll/glue", "sst2")
    assert "Fine-tuned from `models/bert-base-uncased`" in card.text
    assert "2 epochs, batch 16, lr 2e-05" in card.text and "precision bf16" in card.text
    assert "random sample of 2,000 training rows" in card.text


def test_student_card_has_lineage_export_and_speed(run: Path) -> None:
    card = load(run / "student" / "prediction" / "best")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "text-classification"
    assert {"tinybert", "knowledge-distillation"} <= set(data["tags"])
    assert metric_values(card) == {("validation", "accuracy"): STUDENT_EVAL["accuracy"]}
    lineage = card.text.split("## Lineage")[1].split("##")[0]
    assert f"`{run / 'teacher' / 'best'}` (dev accuracy 0.8704)" in lineage
    assert f"general-distillation (GD) student `{run / 'general' / 'final'}`" in lineage
    assert "augmented file" in lineage and "2,000 rows in, 36,284 rows out" in lineage
    assert "temperature 2.0" in lineage
    assert "Layer map (teacher layer per student layer): [3, 6, 9, 12]" in card.text
    assert "| dev | accuracy | 0.8291 | 0.8291 | 0.8245 |" in card.text  # torch, ONNX, int8
    assert "onnx/model_int8.onnx 15.0 MB" in card.text
    assert "| onnx | int8 | 32 | 2400.2 |" in card.text and "Test CPU, 2 cores" in card.text
    assert f"{N_PARAMS} parameters" in card.text
    assert "AutoModelForSequenceClassification.from_pretrained" in card.text
    assert "tinybert predict --model" in card.text


# SST-2's dev set: 444 of 872 sentences positive, so always "1" scores 0.5092
SST2_BASELINE = {"accuracy": 444 / 872}


def add_baseline(model: Path, trivial: bool = False, **metrics: float) -> None:
    """Give a model's eval_results.json (with `metrics` changed) the baseline and verdict
    `tinybert evaluate` writes."""
    path = model / "eval_results.json"
    results = {**json.loads(path.read_text()), **metrics, "baseline": SST2_BASELINE}
    results["verdict"] = {
        "metric": "accuracy",
        "value": results["accuracy"],
        "baseline": SST2_BASELINE["accuracy"],
        "margin": 0.01,
        "trivial": trivial,
        "baseline_is": "always '1' (the majority class)",
        "single_class": trivial,
    }
    write_json(path, results)


def test_student_card_shows_the_baseline_and_what_it_keeps(run: Path) -> None:
    best = run / "student" / "prediction" / "best"
    add_baseline(best)
    add_baseline(run / "teacher" / "best")
    card = load(best)
    assert (
        "| Split | Metric | Dev result | Baseline | `model.onnx` | `model_int8.onnx` |" in card.text
    )
    assert "| dev | accuracy | 0.8291 | 0.5092 | 0.8291 | 0.8245 |" in card.text
    assert "Baseline: the dev set's trivial baseline, always '1' (the majority class)" in card.text
    # (0.8291 - 0.5092) / (0.8704 - 0.5092) = 88.6% of the gain; 0.8291 / 0.8704 = 95.3%
    lineage = card.text.split("## Lineage")[1].split("##")[0]
    assert (
        "(dev accuracy 0.8704; this model keeps 88.6% of the teacher's gain over the trivial "
        "baseline (95.3% of its score))" in lineage
    )
    assert "Failed" not in card.text
    assert metric_values(card) == {("validation", "accuracy"): STUDENT_EVAL["accuracy"]}


def test_card_of_a_trivial_model_says_so_in_its_limits(run: Path) -> None:
    best = run / "student" / "prediction" / "best"
    add_baseline(best, trivial=True, accuracy=SST2_BASELINE["accuracy"], predicted_classes=1)
    add_baseline(run / "teacher" / "best", trivial=True, accuracy=0.5)
    card = load(best)
    limits = card.text.split("## Limits")[1].splitlines()
    assert limits[2] == (
        "- **Failed: the model is no better than the trivial baseline: dev accuracy 0.5092 "
        "against 0.5092 for always '1' (the majority class), and must beat it by at least 0.01; "
        "it predicts one class for every dev row.** It has not learned the task."
    )
    assert "(dev accuracy 0.5000; no better than the trivial baseline" in card.text
    intro = card.text.split("## Lineage")[0]
    assert "**Failed: no better than the trivial baseline of the dev set (see Limits).**" in intro


def test_general_card_has_no_model_index_and_no_head(run: Path) -> None:
    card = load(run / "general" / "final")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "feature-extraction"
    assert {"tinybert", "knowledge-distillation"} <= set(data["tags"])
    assert "model-index" not in data and not card.data.eval_results
    assert "base_model" not in data  # no card.base_model in its config.yaml
    assert "AutoModel.from_pretrained" in card.text and "No task head" in card.text
    assert "tinybert predict" not in card.text


@pytest.mark.parametrize("prefix", ["dev_matched", "matched"])
def test_mnli_card_has_one_result_per_split(tmp_path: Path, prefix: str) -> None:
    card = load(make_mnli_student(tmp_path / "run", prefix))
    assert metric_values(card) == {
        ("validation_matched", "accuracy"): MNLI_EVAL["dev_matched/accuracy"],
        ("validation_mismatched", "accuracy"): MNLI_EVAL["dev_mismatched/accuracy"],
    }
    assert {r.dataset_config for r in card.data.eval_results} == {"mnli"}
    assert "Randomly initialised" in card.text


def test_dev_results_fall_back_to_the_best_eval_row(run: Path) -> None:
    best = run / "student" / "prediction" / "best"
    (best / "eval_results.json").unlink()
    (run / "teacher" / "best" / "eval_results.json").unlink()
    card = load(best)
    assert metric_values(card) == {("validation", "accuracy"): 0.83}  # step 1000's eval row
    assert "best dev accuracy 0.8700 during fine-tuning" in card.text  # the teacher's done row


def test_copied_model_without_stage_files_still_loads(tmp_path: Path) -> None:
    model = save_model_dir(tmp_path / "somewhere" / "my-model", "BertForTokenClassification")
    card = load(model)
    assert card.data.to_dict()["pipeline_tag"] == "token-classification"
    assert "model-index" not in card.data.to_dict()
    assert "AutoModelForTokenClassification" in card.text


def set_task(run: Path, **task: object) -> None:
    """Change the teacher stage's config.yaml task section."""
    path = run / "teacher" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["task"].update(task)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_main_metric_comes_from_the_task_registry(run: Path) -> None:
    """CoLA selects on mcc (the registry's); config.yaml task.metric overrides it."""
    set_task(run, name="cola")
    assert "the best dev mcc, step 625 of 625" in render_card(run / "teacher" / "best")
    set_task(run, metric="accuracy")
    assert "the best dev accuracy, step 625 of 625" in render_card(run / "teacher" / "best")


def test_a_task_the_registry_cannot_make_still_gets_a_card(run: Path) -> None:
    """A jsonl task without labels: the main metric falls back to the first one recorded."""
    set_task(run, name="jsonl", labels=None)
    assert "the best dev accuracy, step 625 of 625" in render_card(run / "teacher" / "best")


# ---------------------------------------------------------------------------------------------
# Writing


def test_write_card_never_overwrites_a_foreign_readme(run: Path) -> None:
    model = run / "teacher" / "best"
    theirs = "---\nlicense: mit\n---\n# Upstream model\n"
    (model / "README.md").write_text(theirs)
    assert write_card(model) is None
    assert (model / "README.md").read_text() == theirs


def test_write_card_rewrites_its_own_card_with_new_numbers(run: Path) -> None:
    model = run / "teacher" / "best"
    first = write_card(model)
    assert first is not None and MARKER in first.read_text()
    write_json(model / "eval_results.json", {**TEACHER_EVAL, "accuracy": 0.9})
    assert write_card(model) == first
    assert metric_values(hub.ModelCard.load(first)) == {("validation", "accuracy"): 0.9}
    assert [p.name for p in model.iterdir() if p.name.endswith(".tmp")] == []


def test_write_cards_skips_missing_dirs_and_dirs_without_config(run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dirs = [run / "teacher" / "best", tmp_path / "missing", empty, run / "general" / "final"]
    assert write_cards(dirs) == [dirs[0] / "README.md", dirs[3] / "README.md"]
    assert not (empty / "README.md").exists()


def test_render_is_deterministic_and_starts_with_front_matter(run: Path) -> None:
    text = render_card(run / "student" / "prediction" / "best")
    assert text == render_card(run / "student" / "prediction" / "best")
    assert text.startswith("---\nlibrary_name: transformers\n")


def test_card_module_does_not_import_torch() -> None:
    code = "import sys, tinybert.report.card; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
