"""Every bad config value is refused at load, in one line naming the key and where it came from.

The walk over the dataclasses finds every numeric key, so a new key without a declared `Range`
fails here, and each declared range is probed from both sides.
"""

import dataclasses
import math
import operator
import re
import types
import typing
from typing import Annotated

import pytest

from tinybert.config import (
    Config,
    DistillConfig,
    Range,
    StudentConfig,
    TrainConfig,
    leaf_keys,
    load_config,
)
from tinybert.errors import UserError


@dataclasses.dataclass(frozen=True)
class NumericKey:
    key: str  # dotted, e.g. "finetune.lr"
    base: type  # int or float
    ranges: tuple[Range, ...]
    is_list: bool  # tuple[int, ...]: the range applies to each entry


def numeric_keys() -> list[NumericKey]:
    """Every int/float key of the config and its sections (tinybert.config.leaf_keys)."""
    out = []
    for k in leaf_keys():
        hint = k.hint
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(hint) if a is not type(None)]
            assert len(members) == 1, f"{k.key}: the walk only knows X | None"
            hint = members[0]
        is_list = typing.get_origin(hint) is tuple
        if is_list:
            hint = typing.get_args(hint)[0]
        metadata: tuple = ()
        if typing.get_origin(hint) is Annotated:
            hint, *rest = typing.get_args(hint)
            metadata = tuple(rest)
        if hint in (int, float):
            ranges = tuple(m for m in metadata if isinstance(m, Range))
            out.append(NumericKey(k.key, hint, ranges, is_list))
    return out


KEYS = numeric_keys()


def outside(key: NumericKey) -> list:
    """Values just past each declared bound (plus non-finite floats)."""
    bad = []
    for r in key.ranges:
        bad += [r.ge - 1] if r.ge is not None else []
        bad += [r.gt] if r.gt is not None else []
        bad += [r.le + 1] if r.le is not None else []
        bad += [r.lt] if r.lt is not None else []
    if key.base is float:
        bad = [float(v) for v in bad] + [math.nan, math.inf, -math.inf]
    return bad


def inside_edges(key: NumericKey) -> list:
    """The closed bounds themselves and a value just inside each open one."""
    step = 1 if key.base is int else 0.5
    good = []
    for r in key.ranges:
        good += [r.ge] if r.ge is not None else []
        good += [r.le] if r.le is not None else []
        good += [r.gt + step] if r.gt is not None else []
        good += [r.lt - step] if r.lt is not None else []
    return [key.base(v) for v in good]


def as_override(key: NumericKey, value) -> str:
    text = repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return f"{key.key}=[{text}]" if key.is_list else f"{key.key}={text}"


def test_walk_finds_every_section_and_every_numeric_key_declares_a_range():
    names = {k.key for k in KEYS}
    for section in ("finetune", "intermediate", "prediction", "general"):
        assert f"{section}.grad_accum" in names and f"{section}.lr" in names
    assert {"seed", "task.max_seq_length", "corpus.max_sequences"} <= names
    assert {"student.teacher_layers", "distill.layer_map", "distill.temperature"} <= names
    missing = [k.key for k in KEYS if not k.ranges]
    assert not missing, f"numeric config keys without a declared Range: {missing}"


@pytest.mark.parametrize(
    "override",
    [as_override(k, v) for k in KEYS for v in outside(k)],
)
def test_every_out_of_range_value_is_refused_naming_key_and_override(override):
    key = override.partition("=")[0]
    with pytest.raises(UserError) as info:
        load_config([], [override])
    message = str(info.value)
    problem = "every entry must be " if override.endswith("]") else "must be "
    assert message.startswith(f"config key '{key}' (from command line '{override}'): {problem}")
    assert "\n" not in message


# hidden_size = 1 only fits one attention head.
COMPANIONS = {"student.hidden_size": ["student.num_attention_heads=1"]}


@pytest.mark.parametrize(
    ("key", "value"),
    [(k, v) for k in KEYS for v in inside_edges(k)],
    ids=lambda x: x.key if isinstance(x, NumericKey) else repr(x),
)
def test_range_edges_are_accepted(key, value):
    cfg = load_config([], [as_override(key, value), *COMPANIONS.get(key.key, [])])
    loaded = operator.attrgetter(key.key)(cfg)
    assert loaded == ((value,) if key.is_list else value)


REFUSED = [
    ("finetune.lr=-1", "must be a finite number > 0, got -1.0"),
    ("finetune.lr=0", "got 0.0"),
    ("finetune.lr=.nan", "must be a finite number > 0, got nan"),
    ("finetune.lr=nan", "got nan"),
    ("finetune.lr=.inf", "got inf"),
    ("finetune.lr=-inf", "got -inf"),
    ("finetune.grad_accum=0", "must be an integer >= 1, got 0"),
    ("general.grad_accum=-1", "must be an integer >= 1, got -1"),
    ("task.max_train_examples=-5", "must be an integer >= 1, got -5"),
    ("task.max_train_examples=0", "got 0"),
    ("task.max_eval_examples=-5", "got -5"),
    ("task.max_eval_examples=0", "got 0"),
    ("student.dropout=2", "must be a finite number in [0, 1), got 2.0"),
    ("student.dropout=1", "got 1.0"),
    ("student.dropout=-0.1", "got -0.1"),
    ("distill.temperature=0", "must be a finite number > 0, got 0.0"),
    ("intermediate.max_steps=-3", "must be an integer >= 1, got -3"),
    ("intermediate.max_steps=0", "got 0"),
    ("prediction.epochs=-1", "must be a finite number > 0, got -1.0"),
    ("prediction.epochs=0", "got 0.0"),
    ("finetune.eval_steps=-1", "must be an integer >= 1, got -1"),
    ("finetune.eval_steps=0", "got 0"),
    ("general.save_steps=-1", "got -1"),
    ("general.save_steps=0", "got 0"),
    ("finetune.max_checkpoints=0", "must be an integer >= 1, got 0"),
    ("finetune.warmup_ratio=7", "must be a finite number in [0, 1], got 7.0"),
    ("finetune.warmup_ratio=-0.5", "got -0.5"),
    ("task.max_seq_length=-5", "must be an integer in [5, 8192], got -5"),
    ("task.max_seq_length=4", "got 4"),
    ("task.max_seq_length=100000", "got 100000"),
    ("finetune.batch_size=0", "must be an integer >= 1, got 0"),
    ("finetune.eval_batch_size=0", "got 0"),
    ("finetune.log_steps=0", "got 0"),
    ("finetune.weight_decay=-0.01", "must be a finite number >= 0, got -0.01"),
    ("finetune.max_grad_norm=-1", "must be a finite number >= 0, got -1.0"),
    ("student.num_hidden_layers=0", "must be an integer >= 1, got 0"),
    ("student.hidden_size=0", "got 0"),
    ("student.num_attention_heads=0", "got 0"),
    ("student.intermediate_size=-1", "got -1"),
    ("student.teacher_layers=[2, 0, 6]", "every entry must be an integer >= 1, got [2, 0, 6]"),
    ("distill.layer_map=[3, -1]", "every entry must be an integer >= 1, got [3, -1]"),
    ("distill.attention_weight=-1", "must be a finite number >= 0, got -1.0"),
    ("distill.hidden_weight=.nan", "got nan"),
    ("distill.embedding_weight=inf", "got inf"),
    ("corpus.max_sequences=0", "must be an integer >= 1, got 0"),
    ("seed=-1", "must be an integer in [0, 4294967295], got -1"),
    ("seed=4294967296", "got 4294967296"),
]


@pytest.mark.parametrize(("override", "expected"), REFUSED, ids=[o for o, _ in REFUSED])
def test_listed_bad_values_are_refused(override, expected):
    key = override.partition("=")[0]
    with pytest.raises(UserError) as info:
        load_config([], [override])
    message = str(info.value)
    assert message.startswith(f"config key '{key}' (from command line '{override}'): ")
    assert message.endswith(expected) and "\n" not in message


def test_grad_accum_message_exactly():
    with pytest.raises(UserError) as info:
        load_config([], ["finetune.grad_accum=0"])
    assert str(info.value) == (
        "config key 'finetune.grad_accum' (from command line 'finetune.grad_accum=0'): "
        "must be an integer >= 1, got 0"
    )


def test_documented_zeros_and_nulls_are_accepted():
    cfg = load_config(
        [],
        [
            "finetune.max_grad_norm=0",  # disables clipping
            "finetune.weight_decay=0",
            "finetune.warmup_ratio=0",
            "prediction.warmup_ratio=1",
            "student.dropout=0",
            "distill.attention_weight=0",  # turns that loss off
            "seed=0",
            "finetune.max_steps=null",
            "finetune.eval_steps=null",
            "general.save_steps=null",
            "task.max_train_examples=null",
            "corpus.max_sequences=null",
            "distill.layer_map=null",
            "finetune.lr=1e-4",  # YAML 1.1 reads this as a string; still a float
        ],
    )
    assert cfg.finetune.max_grad_norm == 0.0 and cfg.general.save_steps is None
    assert cfg.finetune.lr == 1e-4 and cfg.distill.attention_weight == 0.0


def test_bad_value_in_a_file_names_the_file_that_set_it(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("finetune:\n  grad_accum: 4\n  lr: 0.1\n")
    b.write_text("finetune:\n  grad_accum: 0\n")
    with pytest.raises(UserError) as info:
        load_config([a, b])
    assert str(info.value) == (
        f"config key 'finetune.grad_accum' (from {b}): must be an integer >= 1, got 0"
    )
    # An override fixes it; a later override's bad value is blamed on that override.
    assert load_config([a, b], ["finetune.grad_accum=2"]).finetune.grad_accum == 2
    with pytest.raises(UserError, match=r"'finetune\.lr' \(from command line 'finetune\.lr=-1'\)"):
        load_config([a, b], ["finetune.grad_accum=2", "finetune.lr=-1"])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_spellings_accepted(device):
    assert load_config([], [f"device={device}"]).device == device


@pytest.mark.parametrize(
    "device", ["banana", "gpu", "CUDA", "cuda0", "cuda:x", "cuda:1.5", "cuda:-1", "cpu:0"]
)
def test_device_bad_spelling_refused(device):
    with pytest.raises(UserError) as info:
        load_config([], [f"device={device}"])
    assert str(info.value) == (
        f"config key 'device' (from command line 'device={device}'): "
        f"must be auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps, got {device!r}"
    )


def test_hidden_size_must_split_evenly_across_heads():
    with pytest.raises(UserError) as info:
        load_config([], ["student.hidden_size=100"])
    message = str(info.value)
    assert message.startswith(
        "config keys 'student.hidden_size' (from command line 'student.hidden_size=100') "
        "and 'student.num_attention_heads' (from defaults): hidden_size 100 is not a multiple "
        "of num_attention_heads 12 (a cross-field check"
    )
    assert "\n" not in message
    cfg = load_config([], ["student.hidden_size=16", "student.num_attention_heads=4"])
    assert (cfg.student.hidden_size, cfg.student.num_attention_heads) == (16, 4)


def test_direct_construction_is_checked_too():
    assert TrainConfig(epochs=1, batch_size=4, grad_accum=2, lr=0.1).grad_accum == 2
    with pytest.raises(UserError, match=re.escape("TrainConfig.grad_accum: must be an integer")):
        TrainConfig(grad_accum=0)
    with pytest.raises(UserError, match=re.escape("TrainConfig.lr: must be a finite number > 0")):
        TrainConfig(lr=math.nan)
    with pytest.raises(UserError, match="StudentConfig.hidden_size: hidden_size 10 is not"):
        StudentConfig(hidden_size=10, num_attention_heads=4)
    with pytest.raises(UserError, match=re.escape("DistillConfig.layer_map: every entry")):
        DistillConfig(layer_map=(1, 0))
    with pytest.raises(UserError, match="Config.device"):
        Config(device="banana")
    with pytest.raises(UserError, match="TrainConfig.max_steps: must be an integer"):
        TrainConfig(max_steps=2.5)  # a float where an int belongs


# ---------------------------------------------------------------------------------------------
# Duplicate keys in YAML files.


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("seed: 1\noutput_dir: x\nseed: 2\n", 3, "seed"),
        ("finetune:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", 4, "lr"),
        ("finetune: {lr: 0.1, lr: 0.2}\n", 1, "lr"),
        ("finetune:\n  lr: 0.1\nprediction:\n  lr: 0.1\nfinetune:\n  epochs: 2\n", 5, "finetune"),
        # Deeper than any config section: refused by the loader before the schema is consulted.
        ("task:\n  labels:\n    a: {x: 1, y: 2, x: 3}\n", 3, "x"),
    ],
)
def test_duplicate_key_refused_with_file_and_line(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config([path])
    assert str(info.value).startswith(f"{path}:{line}: duplicate key '{key}'")
    assert "\n" not in str(info.value)


def test_duplicate_key_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "base.yaml").write_text("student:\n  hidden_size: 64\n  hidden_size: 128\n")
    main = tmp_path / "main.yaml"
    main.write_text("include: [base.yaml]\nseed: 3\n")
    with pytest.raises(UserError) as info:
        load_config([main])
    assert str(info.value) == (
        f"{tmp_path / 'base.yaml'}:3: duplicate key 'hidden_size' (first on line 2)"
    )


def test_includes_and_yaml_merge_keys_still_work(tmp_path):
    (tmp_path / "base.yaml").write_text("finetune: {lr: 0.1, epochs: 2}\nseed: 1\n")
    main = tmp_path / "main.yaml"
    # A key brought in by `<<` and set again beside it is an override, not a duplicate.
    main.write_text("include: base.yaml\nfinetune: &ft {lr: 0.2}\nprediction: {<<: *ft, lr: 0.3}\n")
    cfg = load_config([main])
    assert (cfg.finetune.lr, cfg.finetune.epochs, cfg.seed) == (0.2, 2.0, 1)
    assert cfg.prediction.lr == 0.3


def test_duplicate_key_in_an_override_value_is_refused():
    with pytest.raises(
        UserError, match=r"bad override 'student=\{hidden_size: 8, hidden_size: 16\}"
    ):
        load_config([], ["student={hidden_size: 8, hidden_size: 16}"])


def test_invalid_yaml_is_one_line_with_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("finetune:\n  lr: [0.1\n")
    with pytest.raises(UserError) as info:
        load_config([path])
    assert str(info.value).startswith(f"{path}:3: not valid YAML: ")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# The CLI: refused before any work, one `error:` line, exit status 2.


def test_cli_show_config_refuses_bad_value(capsys):
    from tinybert.cli import main

    assert main(["show-config", "finetune.lr=-1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [
        "error: config key 'finetune.lr' (from command line 'finetune.lr=-1'): "
        "must be a finite number > 0, got -1.0"
    ]
