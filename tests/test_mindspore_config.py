"""convert-mindspore-config: the seed's td_config_*.yaml / gd_config.yaml -> tinybert YAML.

The fixtures are small hand-written files in the seed's key layout (a config document, then
help texts and choices as the seed's files have), not copies of the seed's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tinybert.config import Config, load_config
from tinybert.convert.mindspore_config import convert_config, flatten
from tinybert.errors import UserError

NET = """\
    seq_length: {seq}
    vocab_size: 30522
    hidden_size: {hidden}
    num_hidden_layers: {layers}
    num_attention_heads: 12
    intermediate_size: {ffn}
    hidden_act: "gelu"
    hidden_dropout_prob: 0.1
    attention_probs_dropout_prob: 0.1
    max_position_embeddings: 512
    type_vocab_size: 2
    initializer_range: 0.02
    use_relative_positions: False
    dtype: mstype.float32
    compute_type: mstype.float16
"""
TEACHER = dict(hidden=768, layers=12, ffn=3072)
STUDENT = dict(hidden=384, layers=4, ffn=1536)

TD = """\
enable_modelarts: False
data_url: ""
train_url: ""
data_path: "/cache/data"
device_target: "Ascend"
enable_profiling: False
description: 'task_distill'
task_type: "classification"
task_name: ""
device_id: 0
do_train: "true"
do_eval: "true"
td_phase1_epoch_size: 7
td_phase2_epoch_size: 2
do_shuffle: "true"
enable_data_sink: "true"
save_ckpt_step: 300
max_ckpt_num: 4
data_sink_steps: 1
load_teacher_ckpt_path: "/ckpt/teacher_sst2.ckpt"
load_gd_ckpt_path: ""
load_td1_ckpt_path: ""
train_data_dir: "/data/sst2/train"
eval_data_dir: "/data/sst2/dev"
schema_dir: "/data/sst2/schema.json"
assessment_method: "accuracy"
dataset_type: "tfrecord"
ckpt_file: ''
file_name: "tinybert"
file_format: "MINDIR"
num_labels: 2
seed1: 1001
seed2: 1002
phase1_cfg:
    batch_size: 16
    loss_scale_value: 256
    scale_factor: 2
    scale_window: 50
    optimizer_cfg:
        AdamWeightDecay:
            learning_rate: 0.00005
            end_learning_rate: 0.0
            power: 1.0
            weight_decay: 0.0001
            eps: 0.000001
            decay_filter: ['layernorm', 'bias']
phase2_cfg:
    batch_size: 24
    loss_scale_value: 65536
    scale_factor: 2
    scale_window: 50
    optimizer_cfg:
        AdamWeightDecay:
            learning_rate: 0.00002
            end_learning_rate: 0.0
            power: 1.0
            weight_decay: 0.001
            eps: 0.000001
            decay_filter: ['layernorm', 'bias']
eval_cfg:
    batch_size: 64
td_teacher_net_cfg:
{teacher}
td_student_net_cfg:
{student}
---
# Help description for each configuration
enable_modelarts: "Whether training on modelarts, default: False"
do_train: "Do train task, default is true."
---
device_target: ['Ascend', 'GPU', 'CPU']
assessment_method: ["accuracy", "bf1", "mf1"]
"""

GD = """\
enable_modelarts: False
train_url: ""
output_path: "/cache/train"
device_target: "GPU"
description: 'general_distill'
distribute: "true"
epoch_size: 2
device_id: 0
device_num: 8
save_ckpt_step: 500
max_ckpt_num: 3
do_shuffle: "true"
enable_data_sink: "false"
data_sink_steps: 1
save_ckpt_path: ''
load_teacher_ckpt_path: '/ckpt/bert_base.ckpt'
data_dir: '/data/enwiki-128'
schema_dir: '/data/enwiki-128/schema.json'
dataset_type: "tfrecord"
common_cfg:
    batch_size: 32
    loss_scale_value: 65536
    scale_factor: 2
    scale_window: 1000
    AdamWeightDecay:
        learning_rate: 0.0001
        end_learning_rate: 0.00000000000001
        power: 1.0
        weight_decay: 0.0001
        eps: 0.000001
        decay_filter: ['layernorm', 'bias']
bert_teacher_net_cfg:
{teacher}
bert_student_net_cfg:
{student}
---
distribute: "Run distribute, default is false."
"""


def td_text(seq: int = 64, teacher: dict | None = None) -> str:
    nets = {
        "teacher": NET.format(seq=seq, **(teacher or TEACHER)),
        "student": NET.format(seq=seq, **STUDENT),
    }
    return TD.replace("{teacher}\n", nets["teacher"]).replace("{student}\n", nets["student"])


def gd_text() -> str:
    nets = {"teacher": NET.format(seq=128, **TEACHER), "student": NET.format(seq=128, **STUDENT)}
    return GD.replace("{teacher}\n", nets["teacher"]).replace("{student}\n", nets["student"])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(text: str, folder: Path) -> Config:
    """Load converted text the way a user would: from a file, with load_config."""
    return load_config([write(folder, "converted.yaml", text)])


def sections(text: str) -> dict[str, str]:
    """The header's sections ("Ignored (no meaning here)" -> its items as one line of text)."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        title = re.fullmatch(r"# (\S.*):", line)
        if title:
            current = title.group(1)
            out[current] = []
        elif current:
            out[current].append(line.lstrip("#").strip())
    return {k: " ".join(v).strip() for k, v in out.items()}


@pytest.fixture
def td_sst2(tmp_path: Path) -> Path:
    return write(tmp_path, "td_config_sst2.yaml", td_text())


def test_td_config_converts_and_loads(td_sst2: Path, tmp_path: Path) -> None:
    cfg = load(convert_config(td_sst2), tmp_path)
    assert cfg.task.name == "sst2"  # task_name is "": from the file name
    assert (cfg.task.max_seq_length, cfg.task.metric, cfg.seed) == (64, "accuracy", 1001)
    assert (cfg.intermediate.epochs, cfg.prediction.epochs) == (7, 2)
    assert (cfg.intermediate.batch_size, cfg.prediction.batch_size) == (16, 24)
    assert (cfg.intermediate.lr, cfg.prediction.lr) == (5e-5, 2e-5)
    assert (cfg.intermediate.weight_decay, cfg.prediction.weight_decay) == (1e-4, 1e-3)
    # run_task_distill.py: phase 1 warms up over a tenth of one epoch, phase 2 over 10%
    assert cfg.intermediate.warmup_ratio == pytest.approx(0.1 / 7, abs=1e-6)
    assert cfg.prediction.warmup_ratio == 0.1
    assert (cfg.intermediate.save_steps, cfg.prediction.save_steps) == (300, 300)
    assert (cfg.intermediate.max_checkpoints, cfg.prediction.max_checkpoints) == (4, 4)
    assert cfg.prediction.eval_batch_size == 64
    shape = (cfg.student.num_hidden_layers, cfg.student.hidden_size)
    assert shape + (cfg.student.num_attention_heads, cfg.student.intermediate_size) == (
        4,
        384,
        12,
        1536,
    )
    assert (cfg.student.init, cfg.student.dropout) == ("checkpoint", 0.1)
    assert cfg.distill.layer_map is None  # 12 / 4 divides: the uniform map is the seed's


def test_td_header_lists_ignored_checks_and_the_teacher_shape(td_sst2: Path) -> None:
    text = convert_config(td_sst2)
    parts = sections(text)
    ignored = parts["Ignored (no meaning here)"]
    for key in (
        "enable_data_sink",
        "data_sink_steps",
        "device_target",
        "device_id",
        "enable_modelarts",
        "data_url",
        "train_url",
        "data_path",
        "phase1_cfg.loss_scale_value",
        "phase2_cfg.scale_window",
        "file_format",
    ):
        assert f"{key}:" in ignored, key
    checks = parts["Before running"]
    assert "12 layers and hidden size 768" in checks
    assert "/ckpt/teacher_sst2.ckpt" in checks and "task.data_dir" in checks
    assert "/data/sst2/schema.json" in checks
    assert parts["Not converted (unknown to this converter)"] == "- (none)"
    assert str(td_sst2) in text.splitlines()[0] + text.splitlines()[1]


def test_every_seed_key_is_accounted_for(td_sst2: Path, tmp_path: Path) -> None:
    """No key is silently dropped: each one of the first document is named in the header."""
    gd = write(tmp_path, "gd_config.yaml", gd_text())
    for path in (td_sst2, gd):
        header = " ".join(sections(convert_config(path)).values())
        first = next(yaml.safe_load_all(path.read_text()))
        for key in flatten(first):
            assert f"{key}:" in header or f"{key} " in header, (path.name, key)


def test_unknown_keys_are_listed(tmp_path: Path) -> None:
    text = td_text().replace("seed1: 1001\n", "seed1: 1001\nmy_new_switch: 3\n")
    text = text.replace(
        "            power: 1.0\n", "            power: 1.0\n            amsgrad: true\n", 1
    )
    text = text.replace("    loss_scale_value: 256\n", "    loss_scale_value: 256\n    warmup: 9\n")
    path = write(tmp_path, "td_config_qnli.yaml", text)
    converted = convert_config(path)
    unknown = sections(converted)["Not converted (unknown to this converter)"]
    assert "my_new_switch: 3" in unknown and "phase1_cfg.warmup: 9" in unknown
    assert "phase1_cfg.optimizer_cfg.AdamWeightDecay.amsgrad: True" in unknown
    assert load(converted, tmp_path).task.name == "qnli"


def test_gd_config_converts_and_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "gd_config.yaml", gd_text())
    text = convert_config(path)
    cfg = load(text, tmp_path)
    assert cfg.general.epochs == 2
    assert cfg.general.batch_size == 256  # 32 per device x device_num 8 (distribute "true")
    assert (cfg.general.lr, cfg.general.weight_decay, cfg.general.warmup_ratio) == (1e-4, 1e-4, 0.1)
    assert (cfg.general.save_steps, cfg.general.max_checkpoints) == (500, 3)
    assert (cfg.corpus.max_seq_length, cfg.corpus.path) == (128, "/data/enwiki-128")
    assert (cfg.student.num_hidden_layers, cfg.student.hidden_size) == (4, 384)
    assert cfg.student.init == "random"  # GD trains the student from scratch, as the seed
    parts = sections(text)
    assert "12 layers and hidden size 768" in parts["Before running"]
    assert "/ckpt/bert_base.ckpt" in parts["Before running"]
    ignored = parts["Ignored (no meaning here)"]
    for key in ("enable_data_sink", "device_target", "distribute", "common_cfg.loss_scale_value"):
        assert f"{key}:" in ignored, key


def test_task_names_and_metrics(tmp_path: Path) -> None:
    ner = write(
        tmp_path, "td_config_ner.yaml", td_text(seq=128).replace("num_labels: 2", "num_labels: 43")
    )
    cfg = load(convert_config(ner), tmp_path)
    assert (cfg.task.name, cfg.task.metric) == ("cluener", "token_accuracy")
    assert "num_labels 43" in sections(convert_config(ner))["Before running"]
    named = td_text().replace('task_name: ""', 'task_name: "MNLI"')
    named = named.replace('assessment_method: "accuracy"', 'assessment_method: "bf1"')
    text = convert_config(write(tmp_path, "mine.yaml", named))
    cfg = load(text, tmp_path)
    assert (cfg.task.name, cfg.task.metric) == ("mnli", None)  # bf1: no equivalent for MNLI
    assert 'assessment_method: "bf1"' in sections(text)["Not exactly the seed's behaviour"]
    unnamed = write(tmp_path, "other.yaml", td_text())
    assert load(convert_config(unnamed, task="tnews"), tmp_path).task.name == "tnews"


def test_what_cannot_be_expressed_is_said(tmp_path: Path) -> None:
    text = td_text(teacher=dict(hidden=768, layers=6, ffn=3072))
    text = text.replace("power: 1.0", "power: 2.0", 1).replace(
        "eps: 0.000001", "eps: 0.00000001", 1
    )
    converted = convert_config(write(tmp_path, "td_config_sst2.yaml", text))
    inexact = sections(converted)["Not exactly the seed's behaviour"]
    assert "power 2 cannot be expressed" in inexact
    assert "eps: 1e-08" in inexact
    # 6 teacher layers over 4 student layers: the seed's floor(6/4) = 1 blocks, not our rounding
    assert load(converted, tmp_path).distill.layer_map == (1, 2, 3, 4)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.yaml", None, "not found"),
        ("bad.yaml", "a: [1, 2\nb: 3\n", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "no mapping of keys"),
        ("other.yaml", "foo: 1\nbar: {baz: 2}\n", "neither a seed task-distillation config"),
        ("ours.yaml", "task: {name: sst2}\nstudent: {hidden_size: 312}\n", "already a tinybert"),
    ],
)
def test_bad_input_is_refused(
    tmp_path: Path, name: str, content: str | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as info:
        convert_config(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert "td_config_*.yaml" in message  # the fix


def test_no_task_and_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="task_name is empty.*--task"):
        convert_config(write(tmp_path, "my_td.yaml", td_text()))
    bad = td_text().replace("    batch_size: 16", "    batch_size: 0")
    with pytest.raises(UserError, match=r"intermediate\.batch_size.*phase1_cfg\.batch_size"):
        convert_config(write(tmp_path, "td_config_sst2.yaml", bad))
    bad = td_text().replace("td_phase1_epoch_size: 7", "td_phase1_epoch_size: many")
    with pytest.raises(UserError, match="td_phase1_epoch_size"):
        convert_config(write(tmp_path, "td_config_sst2.yaml", bad))
