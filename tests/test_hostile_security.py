"""Hostile-user cases from issue 16: security.

A run folder, model directory, export or data set someone else made must not run code when
tinybert reads it. The pickle payloads below would create a marker file when unpickled; every
test checks that the marker never appears and that the file is refused with one clear line.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from tinybert.cli import main
from tinybert.config import _StrictLoader, load_config, parse_override
from tinybert.errors import UserError
from tinybert.model import load_model
from tinybert.train import checkpoint as ckpt
from tinybert.train.health import last_sound_checkpoint
from tinybert.train.resume import find_resume

from .conftest import write_sst2, write_tiny_bert

SRC = Path(__file__).resolve().parents[1] / "src" / "tinybert"


class Payload:
    """Unpickling this creates `marker` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> None:
    """Write a torch.save file at `path` whose state would run Payload on a full unpickle."""
    torch.save({"format": ckpt.STATE_FORMAT, "version": 1, "state": Payload(marker)}, path)


def test_the_payload_is_live(tmp_path):
    """The control: unpickled in full, the planted file does run its code."""
    marker = tmp_path / "pwned"
    plant(tmp_path / "state.pt", marker)
    torch.load(tmp_path / "state.pt", weights_only=False)
    assert marker.exists()


def assert_refused(exc: pytest.ExceptionInfo, path: Path, marker: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    assert not marker.exists(), "the payload ran"
    return message


# ---------------------------------------------------------------------------------------------
# trainer_state.pt


def test_pickle_payload_in_a_run_folder_is_refused_on_resume(tmp_path, capsys):
    bert, sst2 = write_tiny_bert(tmp_path / "bert"), write_sst2(tmp_path / "SST-2")
    out = tmp_path / "run"
    args = [
        f"model={bert}",
        f"output_dir={out}",
        f"task.data_dir={sst2}",
        "task.max_seq_length=16",
        "device=cpu",
        "finetune.batch_size=8",
        "finetune.save_steps=2",
        "finetune.eval_steps=100",
    ]
    assert main(["finetune", *args, "finetune.max_steps=2"]) == 0
    stage, marker = out / "teacher", tmp_path / "pwned"
    for folder in (stage / "checkpoint-2", stage / "final"):
        plant(folder / ckpt.STATE_FILE, marker)
    capsys.readouterr()

    assert main(["finetune", *args, "finetune.max_steps=4", "resume=auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), "the payload ran"
    assert err.count("\n") == 0 and str(stage / "final" / ckpt.STATE_FILE) in err
    assert "is not a tinybert training state" in err and "may be unsafe" in err
    assert "resume=<path>" in err
    # the divergence check reads checkpoints too: an unsafe one is passed over, not run
    assert last_sound_checkpoint(stage, 10) is None
    assert not marker.exists()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p, m: plant(p, m), "pickled Python objects"),
        (
            lambda p, m: p.write_bytes(pickle.dumps({"model": Payload(m)}, protocol=2)),
            "pickled Python",
        ),
        # the layout of tinybert before issue 16 (a pickled dict of everything)
        (lambda p, m: torch.save({"position": {"step": 1}, "model": {}}, p), "layout"),
        (lambda p, m: torch.save({"format": ckpt.STATE_FORMAT, "version": 99}, p), "version 99"),
        (
            lambda p, m: torch.save(
                {"format": ckpt.STATE_FORMAT, "version": 1, "state": "{", "tensors": {}}, p
            ),
            "does not decode",
        ),
        (
            lambda p, m: torch.save(
                {
                    "format": ckpt.STATE_FORMAT,
                    "version": 1,
                    "tensors": {},
                    "state": '{"$tensor": "7"}',
                },
                p,
            ),
            "does not decode",
        ),
    ],
    ids=["torch-pickle", "plain-pickle", "old-layout", "newer-version", "bad-json", "no-tensor"],
)
def test_anything_but_a_tinybert_state_is_refused(tmp_path, make, reason):
    folder, marker = tmp_path / "checkpoint-3", tmp_path / "pwned"
    folder.mkdir()
    make(folder / ckpt.STATE_FILE, marker)
    with pytest.raises(UserError) as exc:
        find_resume(str(folder), tmp_path)
    message = assert_refused(exc, folder / ckpt.STATE_FILE, marker)
    assert "is not a tinybert training state" in message and reason in message
    with pytest.raises(UserError):  # resume=auto finds it the same way
        find_resume("auto", tmp_path)
    assert not marker.exists()


def test_state_round_trip_keeps_every_value_and_type(tmp_path):
    shared = torch.arange(6, dtype=torch.float32)
    state = {
        "position": {"step": 7, "best_metric": None, "best_constant": False, "evaluated_at": -1},
        "floats": [1.5, math.inf, -math.inf, 0.1 + 0.2, 2**70],
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": shared}},
            "g": [(0.9, 0.999)],
        },
        "$odd": {"$tensor": "not a reference"},
        "rng": torch.get_rng_state(),
        "bf16": torch.ones(2, 3, dtype=torch.bfloat16),
        "alias": shared,  # the same tensor twice: read back as one
        "nan": math.nan,
    }
    ckpt.save_state(tmp_path, state)
    back = ckpt.load_state(tmp_path)
    assert back.keys() == state.keys()
    assert back["position"] == state["position"]
    assert back["floats"] == [1.5, math.inf, -math.inf, 0.1 + 0.2, 2**70]
    assert math.isnan(back["nan"])
    assert list(back["optimizer"]["state"]) == [0]  # an int key stays an int
    assert back["optimizer"]["g"] == [(0.9, 0.999)]  # a tuple stays a tuple
    assert back["$odd"] == {"$tensor": "not a reference"}
    assert torch.equal(back["rng"], state["rng"]) and back["rng"].dtype == torch.uint8
    assert back["bf16"].dtype == torch.bfloat16
    assert back["alias"] is back["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(back["alias"], shared)


def test_real_optimizer_scheduler_and_rng_resume_exactly(tmp_path):
    def setup():
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 3)
        opt = torch.optim.AdamW(layer.parameters(), lr=1e-2)
        return layer, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))

    def step(layer, opt, sched):
        layer(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step(), sched.step(), opt.zero_grad()

    layer, opt, sched = setup()
    step(layer, opt, sched)
    saved = {
        "model": layer.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }
    ckpt.save_state(tmp_path, saved)
    step(layer, opt, sched)  # the uninterrupted run

    state = ckpt.load_state(tmp_path)
    other, opt2, sched2 = setup()
    other.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    step(other, opt2, sched2)
    for a, b in zip(layer.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)  # bit for bit


def test_a_state_with_an_object_is_not_written(tmp_path):
    with pytest.raises(TypeError, match="cannot hold a PosixPath"):
        ckpt.save_state(tmp_path, {"where": tmp_path})
    assert not (tmp_path / ckpt.STATE_FILE).exists()


# ---------------------------------------------------------------------------------------------
# model directories


def test_pickle_payload_in_pytorch_model_bin_is_refused(tmp_path):
    model, marker = write_tiny_bert(tmp_path / "bert"), tmp_path / "pwned"
    (model / "model.safetensors").unlink()
    torch.save(
        {"bert.embeddings.word_embeddings.weight": Payload(marker)}, model / "pytorch_model.bin"
    )
    with pytest.raises(UserError) as exc:
        load_model(model)
    assert "cannot read weights" in assert_refused(exc, model / "pytorch_model.bin", marker)


@pytest.mark.parametrize("shard", ["../elsewhere.safetensors", "/tmp/x.safetensors", "w.bin"])
def test_a_shard_index_names_only_files_beside_it(tmp_path, shard):
    model = write_tiny_bert(tmp_path / "bert")
    (model / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    index = model / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"bert.pooler.dense.weight": shard}}))
    with pytest.raises(UserError, match="is not a .safetensors file name in the same folder"):
        load_model(model)


# ---------------------------------------------------------------------------------------------
# YAML, MindSpore checkpoints, TFRecord, ONNX


def test_yaml_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"!!python/object/apply:builtins.open [{str(marker)!r}, w]"
    config = tmp_path / "run.yaml"
    config.write_text(f"finetune:\n  lr: {evil}\n")
    with pytest.raises(UserError, match=r"run.yaml:2: not valid YAML"):
        load_config([config])
    assert parse_override(f"finetune.lr={evil}") == ("finetune.lr", evil)  # text, not an object
    assert not marker.exists()


def test_a_pickle_named_ckpt_is_not_a_mindspore_checkpoint(tmp_path):
    from tinybert.convert.ms_checkpoint import read_entries

    path, marker = tmp_path / "bert.ckpt", tmp_path / "pwned"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UserError, match="not a MindSpore checkpoint") as exc:
        read_entries(path)
    assert_refused(exc, path, marker)


def test_a_pickle_named_tfrecord_is_refused(tmp_path):
    from tinybert.data.tfrecord import read_task_split

    marker = tmp_path / "pwned"
    column = {"type": "int64", "rank": 1, "shape": [4]}
    names = ("input_ids", "input_mask", "segment_ids", "label_ids")
    (tmp_path / "schema.json").write_text(json.dumps({"columns": dict.fromkeys(names, column)}))
    (tmp_path / "train.tfrecord").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UserError, match="cannot be read") as exc:
        read_task_split(tmp_path, "train")
    assert_refused(exc, tmp_path / "train.tfrecord", marker)


def test_onnx_external_data_outside_the_export_is_refused(tmp_path):
    from onnx import TensorProto, helper

    from tinybert.export.runtime import OnnxLogits

    (tmp_path / "secret.bin").write_bytes(bytes(16))
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "logits")]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["logits"])], "g", [io[0]], [io[1]], [weight]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        OnnxLogits(path)


# ---------------------------------------------------------------------------------------------
# the source itself


UNSAFE = {
    r"weights_only\s*=\s*False": "torch.load must use weights_only=True",
    r"allow_pickle\s*=\s*True": "numpy must not unpickle",
    r"\bpickle\.loads?\(|Unpickler\(|\bdill\b|\bjoblib\b|\bshelve\b|\bmarshal\.": "no unpickling",
    r"yaml\.(unsafe_load|full_load|load_all)\(|FullLoader|UnsafeLoader": "YAML: safe loaders only",
    r"trust_remote_code": "no remote code",
    r"register_custom_ops_library": "no ONNX custom-op libraries",
    r"(?<![\w.])(eval|exec)\(": "no eval/exec",
}


def arguments(text: str, start: int) -> str:
    """The text between the "(" before `start` and its matching ")"."""
    depth = 1
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start:end]
    return text[start:]


def test_the_source_never_loads_unsafely():
    found = []
    for file in sorted(SRC.rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        for pattern, rule in UNSAFE.items():
            found += [f"{file.name}: {rule}" for _ in re.finditer(pattern, text)]
        for name, needed in (("torch.load", "weights_only=True"), ("yaml.load", "_StrictLoader")):
            for call in re.finditer(re.escape(name) + r"\(", text):
                if needed not in arguments(text, call.end()):
                    found.append(f"{file.name}: {name} without {needed}")
    assert found == []
    assert issubclass(_StrictLoader, yaml.SafeLoader)
