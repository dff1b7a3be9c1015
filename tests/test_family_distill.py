"""Every stage that reads a teacher works with a teacher of every supported family: finetune,
general-distill, both task-distillation phases, evaluate; the attention signal is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from tests.conftest import TINY, write_sst2, write_tiny_bert
from tests.families import MODEL_TYPES, write_teacher
from tinybert.cli import main
from tinybert.data.corpus import PackingOptions, prepare_corpus
from tinybert.data.tokenization import model_token_types
from tinybert.model import FAMILIES, load_any_model, load_model

STUDENT = [
    "student.num_hidden_layers=1",
    "student.hidden_size=16",
    f"student.num_attention_heads={TINY['num_attention_heads']}",
    "student.intermediate_size=24",
]


def td_args(tmp_path: Path, teacher: Path, *extra: str) -> list[str]:
    return [
        f"teacher={teacher}",
        f"output_dir={tmp_path / 'out'}",
        f"task.data_dir={write_sst2(tmp_path / 'SST-2', n_train=16, n_dev=8)}",
        "task.max_seq_length=16",
        "device=cpu",
        *STUDENT,
        "intermediate.epochs=1",
        "intermediate.batch_size=8",
        "prediction.epochs=1",
        "prediction.batch_size=8",
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_task_distill_from_every_family(tmp_path: Path, model_type: str, capsys) -> None:
    teacher = write_teacher(tmp_path / model_type, model_type, head="sequence")
    assert main(["task-distill", *td_args(tmp_path, teacher)]) == 0
    student = tmp_path / "out/student"
    family = FAMILIES[model_type]
    record = json.loads((student / "intermediate/init.json").read_text())["teacher"]
    assert record["model_type"] == model_type and record["attention"] == family.attention
    assert f"teacher: {record['text']}" in capsys.readouterr().out  # the stage's banner
    phase1 = read_jsonl(student / "intermediate/metrics.jsonl")
    losses = [r["att_loss"] for r in phase1 if "att_loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    best = student / "prediction/best"
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["vocab_size"] == load_any_model(teacher)[0].config.vocab_size
    assert (config["type_vocab_size"] > 1) == model_token_types(teacher)
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", *td_args(tmp_path, teacher), f"--model={best}", f"--output={out}"]) == 0
    )
    assert json.loads(out.read_text())["n_examples"] == 8


@pytest.mark.parametrize("model_type", ["roberta", "modernbert"])
def test_finetune_saves_the_teacher_in_its_own_format(tmp_path: Path, model_type: str) -> None:
    encoder = write_teacher(tmp_path / "enc", model_type, head="encoder")
    args = [
        f"model={encoder}",
        f"output_dir={tmp_path / 'out'}",
        f"task.data_dir={write_sst2(tmp_path / 'SST-2', n_train=16, n_dev=8)}",
        "task.max_seq_length=16",
        "device=cpu",
        "finetune.epochs=1",
        "finetune.batch_size=8",
    ]
    assert main(["finetune", *args]) == 0
    best = tmp_path / "out/teacher/best"
    assert json.loads((best / "config.json").read_text())["model_type"] == model_type
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        best, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    transformers.AutoTokenizer.from_pretrained(best)
    # and it is a teacher: its head counts as trained
    assert main(["task-distill", *td_args(tmp_path, best, "distill.phases=[prediction]")]) == 0


def test_general_distill_from_a_roberta_teacher(tmp_path: Path, corpus_file: Path) -> None:
    teacher = write_teacher(tmp_path / "roberta", "roberta", head="encoder")
    corpus = tmp_path / "prepared"
    prepare_corpus([str(corpus_file)], teacher, corpus, PackingOptions(max_seq_length=24))
    args = [
        f"teacher={teacher}",
        f"corpus.path={corpus}",
        f"output_dir={tmp_path / 'gd'}",
        "device=cpu",
        *STUDENT,
        "general.batch_size=5",
        "general.max_steps=3",
        "general.log_steps=1",
    ]
    assert main(["general-distill", *args]) == 0
    rows = read_jsonl(tmp_path / "gd/general/metrics.jsonl")
    assert [r["step"] for r in rows if "att_loss" in r] == [1, 2, 3]
    record = json.loads((tmp_path / "gd/general/init.json").read_text())["teacher"]
    assert record["family"] == "RoBERTa"
    saved = tmp_path / "gd/general/final"
    transformers.AutoModel.from_pretrained(saved)
    transformers.AutoTokenizer.from_pretrained(saved)


def test_teacher_layers_from_roberta_and_refused_for_modernbert(tmp_path: Path) -> None:
    roberta = write_teacher(tmp_path / "r", "roberta", head="sequence", layers=4)
    same_width = [
        "student.num_hidden_layers=2",
        "student.hidden_size=32",
        "student.intermediate_size=37",
        "student.init=teacher_layers",
        "student.teacher_layers=[2,4]",
        "distill.phases=[prediction]",
    ]
    assert main(["task-distill", *td_args(tmp_path / "a", roberta, *same_width)]) == 0
    modern = write_teacher(tmp_path / "m", "modernbert", head="sequence")
    assert main(["task-distill", *td_args(tmp_path / "b", modern, *same_width)]) == 2


def test_a_bert_teacher_takes_the_path_it_took_before(tmp_path: Path) -> None:
    """BERT directories load through tinybert's own BERT, exactly as before this family
    support: same class, same tensors (so the same student, bit for bit)."""
    path = write_tiny_bert(tmp_path / "bert", num_labels=2)
    generic, _ = load_any_model(path, head="sequence")
    direct, _ = load_model(path, head="sequence")
    assert type(generic) is type(direct)
    assert generic.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in generic.state_dict().items())


def test_a_padded_embedding_table_is_accepted_for_bpe_and_unigram_teachers(tmp_path: Path) -> None:
    """Released ModernBERT/DeBERTa-v3/RoBERTa checkpoints have more embedding rows than tokens;
    that is no sign of a wrong vocabulary there (for a WordPiece BERT it is: still refused)."""
    probe = write_teacher(tmp_path / "probe", "modernbert")
    rows = load_any_model(probe)[0].config.vocab_size + 8
    teacher = write_teacher(tmp_path / "mb", "modernbert", vocab_size=rows)
    assert main(["task-distill", *td_args(tmp_path, teacher, "distill.phases=[prediction]")]) == 0
    config = json.loads((tmp_path / "out/student/prediction/best/config.json").read_text())
    assert config["vocab_size"] == rows


def test_tinybert_run_with_a_roberta_model(tmp_path: Path) -> None:
    """`tinybert run` from a RoBERTa encoder to a report: the teacher is evaluated and timed
    but not exported (tinybert exports BERTs); the report and the student's card say which
    attention signal the student learned."""
    from tests.test_run import run_args

    encoder = write_teacher(tmp_path / "enc", "roberta", head="encoder")
    sst2 = write_sst2(tmp_path / "SST-2", n_train=16, n_dev=8)
    quick = ["finetune.epochs=1", "intermediate.epochs=1", "prediction.epochs=1"]
    args = [a for a in run_args(tmp_path / "out", encoder, sst2) if a.split("=")[0] not in
            {q.split("=")[0] for q in quick}]  # fmt: skip
    lenient = ["run.allow_weak_teacher=true", "run.allow_trivial=true"]  # random weights
    assert main(["run", *args, *quick, *lenient]) == 0
    out = tmp_path / "out"
    assert (out / "teacher/best/speed.json").is_file()
    assert not (out / "teacher/best/onnx").exists()
    assert (out / "student/prediction/best/onnx/model_int8.onnx").is_file()
    report = (out / "report/report.md").read_text()
    assert "a roberta model, not exported" in report
    assert "Attention: task-distill: RoBERTa teacher" in report
    card = (out / "student/prediction/best/README.md").read_text()
    assert "the student learns its pre-softmax attention scores" in card


@pytest.mark.parametrize("model_type", ["deberta-v2", "modernbert"])
def test_phase1_teacher_cache_gives_the_live_teachers_losses(
    tmp_path: Path, model_type: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probabilities (DeBERTa) and window-masked scores (ModernBERT) read back from phase 1's
    teacher cache give the losses the live teacher gives."""
    teacher = write_teacher(tmp_path / model_type, model_type, head="sequence")
    losses = {}
    for budget in ("0", "1"):
        run = tmp_path / f"cache-{budget}"
        extra = [
            "distill.phases=[intermediate]",
            "intermediate.epochs=2",
            "intermediate.log_steps=1",
        ]
        args = td_args(run, teacher, *extra, f"intermediate.teacher_cache_gb={budget}")
        assert main(["task-distill", *args]) == 0
        rows = read_jsonl(run / "out/student/intermediate/metrics.jsonl")
        losses[budget] = [r["att_loss"] for r in rows if "att_loss" in r]
        assert ("caching the teacher's outputs" in capsys.readouterr().out) == (budget == "1")
    assert len(losses["1"]) == 4
    assert losses["1"] == pytest.approx(losses["0"], rel=1e-5)


def test_predict_on_a_roberta_teacher_says_what_serves_it(tmp_path: Path, capsys) -> None:
    teacher = write_teacher(tmp_path / "r", "roberta", head="sequence")
    assert main(["predict", str(tmp_path / "none.txt"), f"--model={teacher}"]) == 2
    err = capsys.readouterr().err
    assert "model_type is 'roberta'" in err and "export/predict serve their students" in err
