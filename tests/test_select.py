"""Weight selection (student.init=select) and what student.init=auto resolves to: indices in
every tensor, exact copies for equal shapes, refusals, transformers interop, and the recorded
start of a distillation run (init.json, fingerprint, model card, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from tinybert.cli import main
from tinybert.config import StudentConfig, load_config
from tinybert.data.corpus import PackingOptions, prepare_corpus
from tinybert.distill.student import build_student, resolve_start
from tinybert.errors import UserError
from tinybert.model import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    save_model,
)
from tinybert.model.select import select_indices, select_weights, spread
from tinybert.pipeline.commands import stage_table
from tinybert.pipeline.stages import plan
from tinybert.report.card import render_card
from tinybert.report.collect import collect_run
from tinybert.report.render import start_line
from tinybert.train.checkpoint import load_state

from .conftest import TINY, write_sst2, write_vocab

transformers.logging.set_verbosity_error()
LABELS = ("0", "1")
IDS = torch.tensor([[2, 7, 9, 11, 3, 0], [2, 5, 6, 3, 0, 0]])
MASK = (IDS != 0).long()


def teacher_model(cls: type = BertForSequenceClassification, **shape: int):
    """A random teacher whose every weight is distinct (so a wrong index cannot go unseen)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, id2label=LABELS, **{**TINY, **shape})
    return cls(config).eval()


def student_cfg(layers: int, hidden: int, heads: int, ffn: int, **more) -> StudentConfig:
    return StudentConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=ffn,
        **more,
    )


def build(cfg: StudentConfig, teacher, head: str = "sequence"):
    labels = {} if head == "encoder" else {"num_labels": 2, "id2label": LABELS}
    return build_student(cfg, teacher, head, **labels).eval()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- indices


def test_spread_is_evenly_spaced_and_the_identity_for_equal_sizes():
    assert spread(8, 6) == [0, 1, 2, 4, 5, 6]
    assert spread(12, 4) == [0, 3, 6, 9]
    assert spread(16, 12) == [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    assert spread(7, 7) == list(range(7))


@pytest.mark.parametrize(
    "cls, head", [(BertForSequenceClassification, "sequence"), (BertModel, "encoder")]
)
def test_equal_shapes_select_the_source_exactly(cls, head):
    teacher = teacher_model(cls)
    cfg = student_cfg(2, 32, 4, 37, init="select")
    student = build(cfg, teacher, head)
    ours, theirs = student.state_dict(), teacher.state_dict()
    # GD's bare student has no pooler (it never trains one); every other tensor is the source's
    assert set(ours) == {k for k in theirs if head != "encoder" or not k.startswith("pooler.")}
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


def test_hand_worked_selection_picks_these_indices_in_every_tensor():
    # Source: hidden 12, 3 heads of 4, FFN 16, 3 layers. Student: hidden 4, 2 heads of 2,
    # FFN 12, 2 layers. By hand: hidden spread(12, 4) = [0, 3, 6, 9]; heads spread(3, 2) =
    # [0, 1], dims spread(4, 2) = [0, 2], so Q/K/V rows [0, 2, 4, 6]; FFN spread(16, 12);
    # layers: the uniform map of 2 over 3 = [2, 3].
    teacher = teacher_model(
        hidden_size=12, num_attention_heads=3, intermediate_size=16, num_hidden_layers=3
    )
    student = build(student_cfg(2, 4, 2, 12, init="select"), teacher)
    hid, att = [0, 3, 6, 9], [0, 2, 4, 6]
    ffn = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    every = slice(None)
    expected = {
        "embeddings.word_embeddings.weight": (every, hid),
        "embeddings.position_embeddings.weight": (every, hid),
        "embeddings.token_type_embeddings.weight": (every, hid),
        "embeddings.LayerNorm.weight": (hid,),
        "embeddings.LayerNorm.bias": (hid,),
        "pooler.dense.weight": (hid, hid),
        "pooler.dense.bias": (hid,),
    }
    layer = {
        "attention.self.query.weight": (att, hid),
        "attention.self.key.weight": (att, hid),
        "attention.self.value.weight": (att, hid),
        "attention.self.query.bias": (att,),
        "attention.self.key.bias": (att,),
        "attention.self.value.bias": (att,),
        "attention.output.dense.weight": (hid, att),
        "attention.output.dense.bias": (hid,),
        "attention.output.LayerNorm.weight": (hid,),
        "attention.output.LayerNorm.bias": (hid,),
        "intermediate.dense.weight": (ffn, hid),
        "intermediate.dense.bias": (ffn,),
        "output.dense.weight": (hid, ffn),
        "output.dense.bias": (hid,),
        "output.LayerNorm.weight": (hid,),
        "output.LayerNorm.bias": (hid,),
    }
    pairs = {f"bert.{k}": (f"bert.{k}", ix) for k, ix in expected.items()}
    for k, source_layer in enumerate([2, 3]):
        for name, ix in layer.items():
            pairs[f"bert.encoder.layer.{k}.{name}"] = (
                f"bert.encoder.layer.{source_layer - 1}.{name}",
                ix,
            )
    pairs["classifier.weight"] = ("classifier.weight", (every, hid))
    pairs["classifier.bias"] = ("classifier.bias", (every,))
    ours, theirs = student.state_dict(), teacher.state_dict()
    assert set(pairs) == set(ours)  # every tensor is checked
    for name, (source, ix) in pairs.items():
        want = theirs[source]
        for dim, rows in enumerate(ix):
            want = want[(slice(None),) * dim + (rows,)]
        assert torch.equal(ours[name], want), name


def test_fewer_heads_keep_whole_heads():
    teacher = teacher_model()  # 4 heads of 8
    index = select_indices(
        teacher.config,
        BertConfig(vocab_size=40, **{**TINY, "hidden_size": 16, "num_attention_heads": 2}),
    )
    assert index.attention == [*range(0, 8), *range(16, 24)]  # heads 0 and 2, all 8 dims each
    student = build(student_cfg(2, 16, 2, 37, init="select"), teacher)
    q = teacher.bert.encoder.layer[0].attention.self.query.weight
    torch.testing.assert_close(
        student.bert.encoder.layer[0].attention.self.query.weight,
        q[index.attention][:, index.hidden],
        rtol=0,
        atol=0,
    )


def test_select_layers_first_takes_the_first_layers():
    teacher = teacher_model(num_hidden_layers=3)
    start = resolve_start(
        student_cfg(2, 16, 4, 20, init="select", select_layers="first"), teacher.config
    )
    assert start.layers == (1, 2)
    mapped = resolve_start(student_cfg(2, 16, 4, 20, init="select"), teacher.config)
    assert mapped.layers == (2, 3)
    # distill.layer_map, when given, is the map phase 1 uses: the student starts from it
    assert resolve_start(student_cfg(2, 16, 4, 20), teacher.config, "", (1, 3)).layers == (1, 3)


# --------------------------------------------------------------------------- interop, refusals


@pytest.mark.parametrize(
    "cls, head, hf_cls",
    [
        (BertForSequenceClassification, "sequence", transformers.BertForSequenceClassification),
        (BertForTokenClassification, "token", transformers.BertForTokenClassification),
        (BertModel, "encoder", transformers.BertModel),
    ],
)
def test_selected_student_runs_and_loads_in_transformers_equal(tmp_path, cls, head, hf_cls):
    teacher = teacher_model(cls)
    student = build(student_cfg(1, 12, 2, 20), teacher, head)  # auto: select
    with torch.no_grad():
        ours = student(IDS, MASK)
    save_model(student, tmp_path)
    hf = hf_cls.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = hf(input_ids=IDS, attention_mask=MASK)
    if head == "encoder":
        torch.testing.assert_close(ours.last_hidden_state, theirs.last_hidden_state)
    else:
        torch.testing.assert_close(ours.logits, theirs.logits)
        assert torch.isfinite(ours.logits).all()


@pytest.mark.parametrize(
    "shape, named",
    [
        (
            dict(layers=3, hidden=16, heads=4, ffn=20),
            "num_hidden_layers 3 is larger than the source's 2",
        ),
        (
            dict(layers=1, hidden=48, heads=4, ffn=20),
            "hidden_size 48 is larger than the source's 32",
        ),
        (
            dict(layers=1, hidden=24, heads=6, ffn=20),
            "num_attention_heads 6 is larger than the source's 4",
        ),
        (
            dict(layers=1, hidden=12, heads=1, ffn=20),
            "(hidden_size / num_attention_heads) 12 is larger than the source's 8",
        ),
        (
            dict(layers=1, hidden=16, heads=4, ffn=64),
            "intermediate_size 64 is larger than the source's 37",
        ),
    ],
)
def test_a_larger_student_is_refused_in_one_line_naming_the_dimension(shape, named):
    teacher = teacher_model()
    with pytest.raises(UserError) as info:
        build(student_cfg(**shape, init="select"), teacher)
    message = str(info.value)
    assert named in message and "\n" not in message


def test_select_from_a_larger_model_in_student_path(tmp_path, capsys):
    """student.path: select from any larger BERT, not the teacher; its classifier is copied
    only for the same labels (a bare encoder has none: the head is new, and said so)."""
    big = teacher_model(BertModel)
    save_model(big, tmp_path / "big")
    teacher = teacher_model(hidden_size=16, num_attention_heads=2, intermediate_size=20)
    cfg = student_cfg(1, 16, 2, 20, init="select", path=str(tmp_path / "big"))
    start = resolve_start(cfg, teacher.config, "teacher-dir")
    assert (start.init, start.source, start.layers) == ("select", str(tmp_path / "big"), (2,))
    capsys.readouterr()
    student = build_student(cfg, teacher, "sequence", num_labels=2, id2label=LABELS, start=start)
    said = capsys.readouterr().out
    assert "newly initialised (not selected): classifier.weight, classifier.bias" in said
    index = select_indices(big.config, student.config)
    for ours, theirs in [
        (student.bert.embeddings.word_embeddings.weight, big.embeddings.word_embeddings.weight),
        (student.bert.pooler.dense.bias, big.pooler.dense.bias),
    ]:
        torch.testing.assert_close(ours, theirs[..., index.hidden], rtol=0, atol=0)


def test_other_labels_leave_the_classifier_new():
    teacher = teacher_model()
    new = select_weights(
        teacher.state_dict(),
        teacher.config,
        BertForSequenceClassification(BertConfig(vocab_size=40, num_labels=3, **TINY)),
        [1, 2],
    )
    assert new == ["classifier.weight", "classifier.bias"]


# --------------------------------------------------------------------------- auto


def test_auto_resolves_to_checkpoint_teacher_layers_or_select():
    teacher = teacher_model(num_hidden_layers=3).config
    assert resolve_start(student_cfg(2, 16, 4, 20, path="gd/final"), teacher).init == "checkpoint"
    same = resolve_start(student_cfg(2, 32, 4, 37), teacher, "t/best")
    assert (same.init, same.layers) == ("teacher_layers", (2, 3))
    assert same.describe() == "teacher_layers from t/best, layers [2, 3] (student.init=auto)"
    smaller = resolve_start(student_cfg(2, 16, 4, 37), teacher, "t/best")
    assert (smaller.init, smaller.layers) == ("select", (2, 3))
    assert resolve_start(student_cfg(2, 16, 4, 20, init="random"), teacher).init == "random"
    with pytest.raises(UserError, match="student.init=checkpoint needs student.path"):
        resolve_start(student_cfg(2, 16, 4, 20, init="checkpoint"), teacher)


def test_auto_teacher_layers_equal_the_explicit_copy():
    teacher = teacher_model()
    auto = build(student_cfg(1, 32, 4, 37, dropout=0.1), teacher)
    copy = build(StudentConfig(init="teacher_layers", teacher_layers=(2,)), teacher)
    ours, theirs = auto.state_dict(), copy.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


# --------------------------------------------------------------------------- recorded start


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny task-distill run with student.init=auto (select from the teacher)."""
    base = tmp_path_factory.mktemp("select-run")
    teacher_dir = write_vocab(base / "teacher")
    vocab = len((teacher_dir / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(BertConfig(vocab_size=vocab, id2label=LABELS, **TINY))
    save_model(teacher, teacher_dir, tokenizer_dir=teacher_dir)
    out = base / "run"
    args = [
        f"teacher={teacher_dir}",
        f"output_dir={out}",
        f"task.data_dir={write_sst2(base / 'SST-2')}",
        "task.max_seq_length=16",
        "device=cpu",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "intermediate.max_steps=2",
        "prediction.max_steps=2",
        "prediction.eval_steps=2",
    ]
    assert main(["task-distill", *args]) == 0
    return out, args


def test_task_distill_with_auto_records_the_resolved_start(distilled, capsys):
    distilled, _ = distilled
    for phase in ("intermediate", "prediction"):
        record = json.loads((distilled / "student" / phase / "init.json").read_text())
        assert (record["init"], record["asked"], record["layers"]) == ("select", "auto", [2])
        assert record["text"].startswith("select from ") and "layers [2]" in record["text"]
    state = load_state(distilled / "student/intermediate/final")
    assert state["fingerprint"]["student start"]["init"] == "select"
    assert state["fingerprint"]["student.init"] == "auto"
    card = render_card(distilled / "student/prediction/best")
    assert "Initialised by weight selection from `" in card and "layers [2]" in card
    line = start_line(collect_run(distilled))
    assert line.startswith("Student start: task-distill: select from ")


def test_the_resolved_start_is_a_stable_resume_setting(distilled, capsys):
    out, args = distilled
    assert main(["task-distill", *args, "resume=auto"]) == 0  # same settings: finished, skipped
    capsys.readouterr()
    assert main(["task-distill", *args, "resume=auto", "student.init=random"]) == 2
    error = capsys.readouterr().err
    assert "student.init: saved 'auto', now 'random'" in error
    assert "student start: saved {'init': 'select'" in error


def test_a_random_start_on_a_small_task_is_warned_about(distilled, tmp_path, capsys):
    _, args = distilled
    capsys.readouterr()
    fresh = [a for a in args if not a.startswith("output_dir=")]
    assert main(["task-distill", *fresh, f"output_dir={tmp_path}", "student.init=random"]) == 0
    out = capsys.readouterr()
    assert (
        "warning: a student from random weights rarely learns a task of 48 rows"
        in out.out + out.err
    )
    assert main(["task-distill", *fresh, f"output_dir={tmp_path / 'auto'}"]) == 0
    out = capsys.readouterr()
    assert "rarely learns" not in out.out + out.err


def test_general_distill_selects_from_its_teacher(tmp_path, tiny_bert_dir, corpus_file):
    corpus = tmp_path / "prepared"
    prepare_corpus([str(corpus_file)], tiny_bert_dir, corpus, PackingOptions(max_seq_length=24))
    out = tmp_path / "gd"
    args = [
        f"teacher={tiny_bert_dir}",
        f"corpus.path={corpus}",
        f"output_dir={out}",
        "device=cpu",
        "student.init=select",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "general.batch_size=5",
        "general.max_steps=2",
    ]
    assert main(["general-distill", *args]) == 0
    record = json.loads((out / "general" / "init.json").read_text())
    assert (record["init"], record["asked"], record["layers"]) == ("select", "select", [2])
    card = render_card(out / "general" / "final")
    assert f"Student start: select from {tiny_bert_dir}, layers [2]." in card


@pytest.mark.parametrize("init", ["auto", "select", "random"])
def test_run_with_general_distill_takes_gd_starts_and_wires_td_to_its_student(init):
    overrides = [
        "run.stages=[general-distill, task-distill]",
        "model=m",
        "teacher=t",
        "corpus.path=c",
        f"student.init={init}",
    ]
    stages = plan(load_config([], overrides), [], overrides, stage_table())
    assert "student.init=checkpoint" in stages[1].overrides  # TD starts from GD's student
    bad = [*overrides[:-1], "student.init=checkpoint", "student.path=x"]
    with pytest.raises(UserError, match="student.init=checkpoint asks for another start"):
        plan(load_config([], bad), [], bad, stage_table())
