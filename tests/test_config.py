"""Config loading: every shipped file loads; typos and wrong types fail naming the dotted key."""

from pathlib import Path

import pytest

from tinybert.config import Config, dump_yaml, load_config, parse_override
from tinybert.errors import UserError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads(path):
    cfg = load_config([path])
    assert isinstance(cfg, Config)
    assert load_config([path]) == cfg  # frozen dataclasses compare by value


def test_task_config_includes_student_shape():
    cfg = load_config([Path(__file__).resolve().parents[1] / "configs/sst2.yaml"])
    assert (cfg.student.num_hidden_layers, cfg.student.hidden_size) == (4, 312)
    assert cfg.task.max_seq_length == 64 and cfg.prediction.lr == 3e-5


def test_overrides_win_and_are_typed(tmp_path):
    cfg = load_config(
        [],
        ["finetune.lr=1e-4", "student.teacher_layers=[2, 4, 6]", "task.max_train_examples=null"],
    )
    assert cfg.finetune.lr == 1e-4 and isinstance(cfg.finetune.lr, float)
    assert cfg.student.teacher_layers == (2, 4, 6)
    assert cfg.task.max_train_examples is None


def test_later_file_wins_key_by_key(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("finetune: {lr: 0.1, epochs: 5}\n")
    b.write_text("finetune: {lr: 0.2}\n")
    cfg = load_config([a, b])
    assert (cfg.finetune.lr, cfg.finetune.epochs) == (0.2, 5.0)


def test_unknown_key_names_dotted_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("finetune:\n  learning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"finetune\.learning_rate.*bad\.yaml.*allowed.*lr"):
        load_config([path])


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(UserError, match=r"finetune\.batch_size.*expected int.*'big'"):
        load_config([], ["finetune.batch_size=big"])
    with pytest.raises(UserError, match=r"distill\.loss_mode.*one of 'real_tokens', 'reference'"):
        load_config([], ["distill.loss_mode=mean"])
    with pytest.raises(UserError, match=r"task\.max_seq_length.*expected int"):
        load_config([], ["task.max_seq_length=1.5"])


def test_bad_override_syntax_and_missing_file():
    with pytest.raises(UserError, match="key.sub=value"):
        parse_override("finetune.lr")
    with pytest.raises(UserError, match="config file not found"):
        load_config(["nope.yaml"])


def test_dump_round_trips(tmp_path):
    cfg = load_config([], ["distill.layer_map=[3, 6]", "student.num_hidden_layers=2"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config([path]) == cfg


def test_help_lists_each_section_with_its_own_defaults():
    from tinybert.cli import config_keys

    keys = config_keys()
    assert "  general.batch_size = 256" in keys and "  finetune.batch_size = 32" in keys
    assert "  intermediate.epochs = 10" in keys and "  corpus.path = ''" in keys
