"""`tinybert report`: the run report built from a run directory's files alone.

The run directory here is written by hand in the real formats (metrics.jsonl rows,
eval_results.json, onnx/export.json, speed.json, run.json, a small model.safetensors), so no
model is trained.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from tinybert.errors import UserError
from tinybert.report import build_report, files
from tinybert.report.collect import collect_run

TEACHER_METRICS = {"accuracy": 0.8602941176470589, "f1": 0.9003, "acc_and_f1": 0.88029705882}
STUDENT_METRICS = {"accuracy": 0.8137254901960784, "f1": 0.8712, "acc_and_f1": 0.84246274509}
SPEED = {"teacher": 100.0, "student": 450.0}  # sequences/s at batch 1; batch 32 is 8x
# MRPC's dev set, always "paraphrase": 279 of 408 right, F1 2 * 279 / (2 * 279 + 129)
BASELINE = {"accuracy": 279 / 408, "f1": 558 / 687}
BASELINE["acc_and_f1"] = (BASELINE["accuracy"] + BASELINE["f1"]) / 2


def write_model(folder: Path, layers: int, hidden: int) -> int:
    """config.json and a model.safetensors of the given shape; returns its weight count."""
    folder.mkdir(parents=True)
    tensors = {"embeddings.word_embeddings.weight": np.zeros((30, hidden), np.float32)}
    for i in range(layers):
        tensors[f"encoder.layer.{i}.dense.weight"] = np.zeros((hidden, hidden), np.float32)
        tensors[f"encoder.layer.{i}.dense.bias"] = np.zeros(hidden, np.float32)
    tensors["classifier.weight"] = np.zeros((2, hidden), np.float32)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["BertForSequenceClassification"], "num_hidden_layers": layers}
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": hidden}))
    return sum(t.size for t in tensors.values())


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def train_rows(steps: range, parts: bool = False) -> list[dict]:
    rows = []
    for step in steps:
        row = {"step": step, "epoch": step / 100, "lr": 1e-4, "loss": 2.0 / step, "grad_norm": 1.0}
        if parts:
            row.update(att_loss=1.0 / step, hid_loss=0.6 / step, emb_loss=0.4 / step)
        rows.append({**row, "examples_per_s": 300.0, "tokens_per_s": 9000.0 + step})
    return rows


def eval_rows(values: dict[int, float]) -> list[dict]:
    return [
        {"step": s, "eval": {"accuracy": v, "f1": v, "acc_and_f1": v, "n_examples": 408}}
        for s, v in values.items()
    ]


def verdict(metrics: dict[str, float], trivial: bool = False) -> dict:
    """eval_results.json's verdict on acc_and_f1 against BASELINE."""
    return {
        "metric": "acc_and_f1",
        "value": metrics["acc_and_f1"],
        "baseline": BASELINE["acc_and_f1"],
        "margin": 0.01,
        "trivial": trivial,
        "baseline_is": "always '1' (the majority class)",
        "single_class": trivial,
    }


def write_extras(model: Path, role: str, metrics: dict[str, float]) -> None:
    """eval_results.json (with the trivial baseline), onnx/export.json and speed.json beside a
    saved model."""
    counts = {"n_examples": 408, "predicted_classes": 2, "skipped_rows": 0}
    info = {"model": str(model), "task": "mrpc", "backend": "torch", "precision": "fp32"}
    judged = {"baseline": BASELINE, "verdict": verdict(metrics)}
    write_json(model / "eval_results.json", {**info, **metrics, **counts, **judged})
    weights = (model / "model.safetensors").stat().st_size
    int8 = {k: v - 0.01 for k, v in metrics.items()}
    write_json(
        model / "onnx" / "export.json",
        {
            "out_dir": str(model / "onnx"),
            "head": "sequence",
            "files": {
                "model.onnx": weights + 1000,
                "model_int8.onnx": weights // 4,
                "vocab.txt": 9,
            },
            "torch_bytes": weights,
            "max_diff": {"model.onnx": 3e-6, "model_int8.onnx": 0.05},
            "checked_on": "3 generated batches (batch 1/4/16) + 408 dev examples",
            "fused": {},
            "metrics": {"pytorch": metrics, "model.onnx": metrics, "model_int8.onnx": int8},
            "main_metric": "acc_and_f1",
        },
    )
    results = []
    for backend, precision, factor in (
        ("torch", "fp32", 1),
        ("onnx", "fp32", 2),
        ("onnx", "int8", 3),
    ):
        for batch in (1, 32):
            rate = SPEED[role] * factor * (8 if batch == 32 else 1)
            file = None if backend == "torch" else f"onnx/model_{precision}.onnx"
            results.append(
                {
                    "backend": backend,
                    "precision": precision,
                    "batch_size": batch,
                    "sequences_per_s": rate,
                    "file": file,
                }
            )
    write_json(
        model / "speed.json",
        {
            "model": str(model),
            "task": "mrpc",
            "machine": "Test CPU <fast>, 2 cores",
            "threads": 2,
            "sequences": 256,
            "max_seq_length": 128,
            "mean_tokens": 25.3,
            "measured_at": "2026-11-26T10:00:00+00:00",
            "results": results,
        },
    )


def write_config(folder: Path) -> None:
    config = {
        "task": {"name": "mrpc", "metric": None},
        "distill": {"phases": ["intermediate", "prediction"]},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def stage(name: str, seconds: float, writes: str) -> dict:
    return {
        "name": name,
        "status": "done",
        "seconds": seconds,
        "reads": [],
        "writes": [writes],
        "command": f"tinybert {name} --config configs/demo.yaml",
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A finished run: GD, finetune, TD phases 1 and 2, evaluate, export, benchmark."""
    root = tmp_path / "runs" / "demo"
    params = {
        "teacher": write_model(root / "teacher" / "best", layers=4, hidden=16),
        "student": write_model(root / "student" / "prediction" / "best", layers=2, hidden=8),
    }
    write_rows(root / "general" / "metrics.jsonl", train_rows(range(10, 110, 10), parts=True))
    teacher = eval_rows({50: 0.80, 100: 0.88, 150: 0.86})
    done = {"step": 150, "done": True, "best_metric": 0.88, "best_step": 100}
    write_rows(
        root / "teacher" / "metrics.jsonl", [*train_rows(range(10, 160, 10)), *teacher, done]
    )
    write_rows(
        root / "student" / "intermediate" / "metrics.jsonl", train_rows(range(5, 60, 5), True)
    )
    student = eval_rows({20: 0.79, 40: 0.84})
    done = {"step": 40, "done": True, "best_metric": 0.84, "best_step": 40}
    write_rows(
        root / "student" / "prediction" / "metrics.jsonl",
        [*train_rows(range(5, 45, 5)), *student, done],
    )
    for folder in ("teacher", "student/prediction", "student/intermediate"):
        write_config(root / folder)
    write_extras(root / "teacher" / "best", "teacher", TEACHER_METRICS)
    write_extras(root / "student" / "prediction" / "best", "student", STUDENT_METRICS)
    stages = [
        stage("finetune", 95.5, "runs/demo/teacher"),
        stage("task-distill", 3725.0, "runs/demo/student"),
        stage("evaluate", 12.0, "runs/demo/student/prediction/best"),
    ]
    write_json(
        root / "run.json",
        {
            "configs": ["configs/demo.yaml"],
            "overrides": [],
            "task": "mrpc",
            "started_at": "2026-11-26T10:00:00+00:00",
            "updated_at": "2026-11-26T11:00:00+00:00",
            # paths as the user gave them (relative to where `tinybert run` started: not here)
            "models": {
                "base": "../shared/models/all-MiniLM-L6-v2",
                "teacher": "runs/demo/teacher/best",
                "general": "runs/demo/general/final",
                "student": "runs/demo/student/prediction/best",
            },
            "stages": stages,
        },
    )
    return root, params


class PageParser(HTMLParser):
    """Images, links, and the value cells of table#models: {data-key: {data-model: value}}."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self.table: dict[str, dict[str, float]] = {}
        self.in_models = False
        self.row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif "href" in a or "src" in a:
            self.links.append(a.get("href") or a.get("src") or "")
        self.scripts += tag == "script"
        if tag == "table":
            self.in_models, self.row = a.get("id") == "models", None
        elif tag == "tr" and self.in_models:
            self.row = a.get("data-key")
        elif tag == "td" and self.row and a.get("data-value") is not None:
            cells = self.table.setdefault(self.row, {})
            cells[a["data-model"] or ""] = float(a["data-value"] or "nan")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_models = False


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_report_of_a_finished_run(run_dir: tuple[Path, dict[str, int]]) -> None:
    root, params = run_dir
    result = build_report(root)
    assert result.missing == [] and result.notes == []
    assert result.md == root / "report" / "report.md" and result.md.is_file()
    names = sorted(p.name for p in result.images)
    assert names == ["dev_metric.png", "general_distill.png", "loss.png", "teacher_vs_student.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in result.images)

    page = parse(result.html)
    assert len(page.images) == 4 and page.links == [] and page.scripts == 0
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")

    table = page.table
    for key in TEACHER_METRICS:
        assert table[f"metric:{key}"]["teacher"] == TEACHER_METRICS[key]
        assert table[f"metric:{key}"]["student"] == STUDENT_METRICS[key]
    assert list(table).index("metric:acc_and_f1") < list(table).index("metric:accuracy")
    assert table["params"] == {
        "teacher": params["teacher"],
        "student": params["student"],
        "ratio": params["teacher"] / params["student"],
    }
    int8 = table["onnx:model_int8.onnx:acc_and_f1"]
    assert int8["student"] == STUDENT_METRICS["acc_and_f1"] - 0.01
    assert table["speed:onnx:int8:32"]["student"] == SPEED["student"] * 3 * 8
    assert table["speed:torch:fp32:1"]["ratio"] == SPEED["student"] / SPEED["teacher"]
    weights = (root / "teacher" / "best" / "model.safetensors").stat().st_size
    assert table["size:safetensors"]["teacher"] == weights
    assert table["size:onnx_int8"]["teacher"] == weights // 4

    text = result.html.read_text()
    assert "Test CPU &lt;fast&gt;" in text and "2 threads" in text  # escaped, and present
    assert "tinybert task-distill --config configs/demo.yaml" in text and "1:02:05" in text
    md = result.md.read_text()
    # kept over the baseline: (84.25 - 74.80) / (88.03 - 74.80); the plain ratio beside it
    row = "| dev acc_and_f1 | 74.80 | 88.03 | 84.25 | 71.4% kept | 95.7% of teacher |"
    assert row in md and "![" in md
    assert "FAILED" not in md and "(trivial)" not in md


def test_report_measures_kept_over_the_baseline(run_dir: tuple[Path, dict[str, int]]) -> None:
    root, _ = run_dir
    result = build_report(root)
    table = parse(result.html).table
    for key, base in BASELINE.items():
        row = table[f"metric:{key}"]
        assert row["baseline"] == base
        kept = (STUDENT_METRICS[key] - base) / (TEACHER_METRICS[key] - base)
        assert row["kept"] == pytest.approx(100 * kept)
        assert row["ratio"] == pytest.approx(100 * STUDENT_METRICS[key] / TEACHER_METRICS[key])
    assert table["onnx:model_int8.onnx:acc_and_f1"]["baseline"] == BASELINE["acc_and_f1"]
    assert "baseline" not in table["params"] and "kept" not in table["params"]
    md = result.md.read_text()
    assert "| | baseline | teacher | student | kept over baseline | student vs teacher |" in md
    assert "(student - baseline) / (teacher - baseline)" in md
    assert "always &#x27;1&#x27; (the majority class)" in result.html.read_text()  # escaped


def test_report_calls_a_trivial_student_a_failure(run_dir: tuple[Path, dict[str, int]]) -> None:
    root, _ = run_dir
    student = root / "student" / "prediction" / "best"
    always_one = {**BASELINE}  # the student answers "paraphrase" for every pair
    results = json.loads((student / "eval_results.json").read_text())
    results |= {**always_one, "predicted_classes": 1, "verdict": verdict(always_one, True)}
    write_json(student / "eval_results.json", results)
    result = build_report(root)
    md = result.md.read_text()
    assert md.count("FAILED") == 1
    assert "**FAILED: The student is no better than the trivial baseline: dev acc_and_f1" in md
    assert "it predicts one class for every dev row.**" in md
    assert "| dev acc_and_f1 | 74.80 | 88.03 | **74.80 (trivial)** | 0.0% kept |" in md
    assert "| dev accuracy | 68.38 | 86.03 | 68.38 | 0.0% kept |" in md  # only the main metric
    page = result.html.read_text()
    assert '<p class="fail">FAILED: The student is no better than the trivial baseline' in page
    assert '<td data-model="student" data-value="0.7480' in page
    assert 'class="trivial">74.80 (trivial)</td>' in page
    assert ".fail, td.trivial { color: #b00;" in page  # red
    assert parse(result.html).table["metric:acc_and_f1"]["kept"] == 0.0


def test_half_finished_copy_and_rebuild(run_dir: tuple[Path, dict[str, int]]) -> None:
    root, _ = run_dir
    shutil.rmtree(root / "student")
    (root / "run.json").unlink()
    out = root.parent / "copy-report"
    stale = out / "teacher_vs_student.png"  # from an earlier build of the full run
    stale.parent.mkdir()
    stale.write_bytes(b"\x89PNG old")
    result = build_report(root, out)
    assert result.html == out / "report.html" and not (root / "report").exists()
    student = root / "student" / "prediction" / "best" / "eval_results.json"
    assert any(m.startswith(f"student: {student} not found") for m in result.missing)
    assert any("tinybert evaluate --config" in m for m in result.missing)
    assert any("run.json not found" in m for m in result.missing)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in result.images)
    assert not stale.exists()  # the plot it cannot draw now is gone
    page = parse(result.html)
    assert page.table["metric:accuracy"] == {  # the baseline: from the teacher's file
        "baseline": BASELINE["accuracy"],
        "teacher": TEACHER_METRICS["accuracy"],
    }
    assert "Missing" in result.html.read_text()
    assert not list(out.glob(".*tmp"))


def test_garbled_rows_and_files_are_skipped_and_noted(run_dir: tuple[Path, dict[str, int]]) -> None:
    root, _ = run_dir
    log = root / "teacher" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    lines[3] = lines[3][:20]  # step 40's row, cut short by a kill
    log.write_text("\n".join(lines) + "\n")
    (root / "student" / "prediction" / "best" / "speed.json").write_text("{not json")
    run = collect_run(root)  # what build_report reads (and puts under "Missing")
    assert any(str(log) in m and "line 4" in m and "skipped" in m for m in run.missing)
    assert any("speed.json is not readable JSON" in m for m in run.missing)
    assert [r["step"] for r in run.series["teacher"].train][:4] == [10, 20, 30, 50]


def test_an_empty_folder_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no tinybert run here") as caught:
        build_report(tmp_path)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="not a directory"):
        build_report(tmp_path / "absent")


def test_main_metric_of_a_two_split_task(tmp_path: Path) -> None:
    """MNLI's keys are prefixed by split; task.metric names the base metric."""
    root = tmp_path / "run"
    best = root / "teacher" / "best"
    write_model(best, layers=1, hidden=4)
    metrics = {"dev_matched/accuracy": 0.8, "dev_matched/n_examples": 9}
    metrics |= {"dev_mismatched/accuracy": 0.7, "dev_mismatched/n_examples": 9}
    write_json(best / "eval_results.json", {"task": "mnli", **metrics})
    (root / "teacher" / "config.yaml").write_text(
        yaml.safe_dump({"task": {"name": "mnli", "metric": "accuracy"}})
    )
    run = collect_run(root)
    assert run.main_metric == "dev_matched/accuracy" and run.task == "mnli"
    assert run.teacher.metrics == {"dev_matched/accuracy": 0.8, "dev_mismatched/accuracy": 0.7}


def test_main_metric_comes_from_the_task_registry(run_dir: tuple[Path, dict[str, int]]) -> None:
    """Without export.json's main_metric MRPC still selects on acc_and_f1 (the registry's),
    though the recorded best_metric matches three eval keys."""
    root, _ = run_dir
    for path in root.rglob("export.json"):
        path.unlink()
    assert collect_run(root).main_metric == "acc_and_f1"


def test_main_metric_of_a_task_the_registry_cannot_make(
    run_dir: tuple[Path, dict[str, int]],
) -> None:
    """A jsonl task without labels is no task to the registry: export.json's main_metric, else
    the first metric key (no error)."""
    root, _ = run_dir
    run = json.loads((root / "run.json").read_text())
    write_json(root / "run.json", {**run, "task": "jsonl"})
    assert collect_run(root).main_metric == "acc_and_f1"  # export.json's
    for path in root.rglob("export.json"):
        path.unlink()
    assert collect_run(root).main_metric == "accuracy"


def test_parameter_count_reads_the_safetensors_header(tmp_path: Path) -> None:
    n = write_model(tmp_path / "model", layers=2, hidden=8)
    assert files.count_parameters(tmp_path / "model" / files.WEIGHTS_FILE) == n
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 20)
    assert files.count_parameters(tmp_path / "junk.safetensors") is None
    assert files.count_parameters(tmp_path / "absent.safetensors") is None


def test_file_names_match_their_writers() -> None:
    """report/files.py spells the writers' file names again (their modules import torch)."""
    from tinybert import benchmark, evaluate
    from tinybert.export import onnx
    from tinybert.train import loop

    assert files.INIT_FILE == loop.INIT_FILE
    assert files.EVAL_FILE == evaluate.RESULTS_FILE
    assert files.SPEED_FILE == benchmark.SPEED_FILE
    assert files.EXPORT_FILE == onnx.REPORT_FILE


def test_importing_the_report_does_not_import_torch() -> None:
    code = "import sys, tinybert.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_files_of_stages_the_run_does_not_plan_are_not_missing(
    run_dir: tuple[Path, dict[str, int]],
) -> None:
    """run.json plans no export or benchmark: their absent files are not reported missing,
    while an absent eval_results.json of the planned evaluate stage still is."""
    root, _ = run_dir
    student = root / "student" / "prediction" / "best"
    for name in ("onnx/export.json", "speed.json", "eval_results.json"):
        (student / name).unlink()
    missing = build_report(root).missing
    assert [m for m in missing if "export.json" in m or "speed.json" in m] == []
    assert any("eval_results.json" in m for m in missing)
