"""tinybert convert-mindspore: MindSpore checkpoints read without MindSpore, mapped onto our BERT.

Checkpoints are written here byte by byte in MindSpore's format (a run of serialized `Checkpoint`
protobuf records, see tinybert.convert.ms_checkpoint), with the seed's parameter names spelled
out independently of the converter's tables. The real thing, made by the seed's own cells with
MindSpore (tests/fixtures/mindspore, see make_fixture.py there), proves the numerics: our
converted models reproduce MindSpore's outputs.
"""

from __future__ import annotations

import binascii
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from tinybert.convert.mindspore import _num_heads, convert_checkpoint
from tinybert.convert.ms_checkpoint import read_checkpoint, read_entries
from tinybert.errors import UserError
from tinybert.model import load_model

from .conftest import write_vocab

transformers.logging.set_verbosity_error()

FIXTURE = Path(__file__).parent / "fixtures" / "mindspore"
H, INTER, LAYERS, POSITIONS, TYPES, HEADS = 16, 20, 2, 32, 2, 4
ATOL = 1e-5  # ours vs transformers (same fp32 math, different kernels)
PARITY = 1e-4  # ours vs MindSpore


# --------------------------------------------------------------------------- MindSpore's format


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _record(tag: str, dims: list[int], ms_type: str, content: bytes) -> bytes:
    """One serialized Checkpoint{value: [Value{tag, tensor{dims, tensor_type, content}}]}."""
    tensor = b"".join(_varint(1 << 3) + _varint(d) for d in dims)  # dims: unpacked varints
    tensor += _field(2, ms_type.encode()) + _field(3, content)
    return _field(1, _field(1, tag.encode()) + _field(2, tensor))


def _content(array: np.ndarray, ms_type: str) -> bytes:
    if ms_type == "BFloat16":
        return (array.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    kinds = {"Float16": "<f2", "Float32": "<f4", "Float64": "<f8", "Int32": "<i4"}
    kinds |= {"Int64": "<i8", "Bool": "?"}
    return np.ascontiguousarray(array, dtype=kinds[ms_type]).tobytes()


def write_ckpt(path: Path, entries: dict, ms_type: str = "Float32", chunks: int = 1) -> Path:
    """Write {tag: array | (ms_type, dims, content)} as mindspore.save_checkpoint does: one
    record per entry, a large one split into `chunks` records of the same tag."""
    out = bytearray()
    for tag, value in entries.items():
        if isinstance(value, tuple):  # (ms_type, dims, content) as given
            ms, dims, content = value
            out += _record(tag, dims, ms, content)
            continue
        content = _content(value, ms_type)
        step = -(-len(content) // chunks) if value.size > 64 else len(content) or 1
        for i in range(0, max(len(content), 1), step):
            out += _record(tag, list(value.shape), ms_type, content[i : i + step])
    path.write_bytes(bytes(out))
    return path


# --------------------------------------------------------------------------- the seed's names


# (seed name after the encoder's cells, ours after "embeddings." / "encoder.layer.i.", shape)
SEED_EMBEDDINGS = [
    ("embedding_lookup.embedding_table", "word_embeddings.weight", ("V", H)),
    ("embedding_postprocessor.token_type_embedding.embedding_table",
     "token_type_embeddings.weight", (TYPES, H)),
    ("embedding_postprocessor.full_position_embedding.embedding_table",
     "position_embeddings.weight", (POSITIONS, H)),
    ("embedding_postprocessor.layernorm.gamma", "LayerNorm.weight", (H,)),
    ("embedding_postprocessor.layernorm.beta", "LayerNorm.bias", (H,)),
]  # fmt: skip
SEED_LAYER = [
    ("attention.attention.query_layer.weight", "attention.self.query.weight", (H, H)),
    ("attention.attention.query_layer.bias", "attention.self.query.bias", (H,)),
    ("attention.attention.key_layer.weight", "attention.self.key.weight", (H, H)),
    ("attention.attention.key_layer.bias", "attention.self.key.bias", (H,)),
    ("attention.attention.value_layer.weight", "attention.self.value.weight", (H, H)),
    ("attention.attention.value_layer.bias", "attention.self.value.bias", (H,)),
    ("attention.output.dense.weight", "attention.output.dense.weight", (H, H)),
    ("attention.output.dense.bias", "attention.output.dense.bias", (H,)),
    ("attention.output.layernorm.gamma", "attention.output.LayerNorm.weight", (H,)),
    ("attention.output.layernorm.beta", "attention.output.LayerNorm.bias", (H,)),
    ("intermediate.weight", "intermediate.dense.weight", (INTER, H)),
    ("intermediate.bias", "intermediate.dense.bias", (INTER,)),
    ("output.dense.weight", "output.dense.weight", (H, INTER)),
    ("output.dense.bias", "output.dense.bias", (H,)),
    ("output.layernorm.gamma", "output.LayerNorm.weight", (H,)),
    ("output.layernorm.beta", "output.LayerNorm.bias", (H,)),
]


def seed_params(cells: str, pooler: str, vocab: int, rng: np.random.Generator) -> list[tuple]:
    """(seed name, our encoder-relative name, array) for one seed encoder: its cells `cells`
    (e.g. "bert.bert.bert_") and pooler cell `pooler` (e.g. "bert.bert.")."""

    def r(ms: str, shape: tuple) -> np.ndarray:
        a = rng.normal(0, 0.5, [vocab if d == "V" else d for d in shape]).astype(np.float32)
        return 1 + a if ms.endswith("gamma") else a

    out = [(cells + ms, "embeddings." + ours, r(ms, shape)) for ms, ours, shape in SEED_EMBEDDINGS]
    for i in range(LAYERS):
        ms_layer, our_layer = f"{cells}encoder.layers.{i}.", f"encoder.layer.{i}."
        out += [(ms_layer + ms, our_layer + ours, r(ms, shape)) for ms, ours, shape in SEED_LAYER]
    out.append((f"{pooler}dense.weight", "pooler.dense.weight", r("w", (H, H))))
    out.append((f"{pooler}dense.bias", "pooler.dense.bias", r("b", (H,))))
    return out


def head_params(parent: str, kind: str, vocab: int, rng: np.random.Generator) -> list[tuple]:
    """(seed name, our name, array) for a head: "cls3"/"ner5" (dense_1), "pretraining"."""
    if kind.startswith(("cls", "ner")):
        n = int(kind[3:])
        return [
            (f"{parent}dense_1.weight", "classifier.weight", rng.normal(0, 0.5, (n, H))),
            (f"{parent}dense_1.bias", "classifier.bias", rng.normal(0, 0.5, (n,))),
        ]
    shapes = [
        ("cls1.dense.weight", "cls.predictions.transform.dense.weight", (H, H)),
        ("cls1.dense.bias", "cls.predictions.transform.dense.bias", (H,)),
        ("cls1.layernorm.gamma", "cls.predictions.transform.LayerNorm.weight", (H,)),
        ("cls1.layernorm.beta", "cls.predictions.transform.LayerNorm.bias", (H,)),
        ("cls1.output_bias", "cls.predictions.bias", (vocab,)),
        ("cls2.dense.weight", "cls.seq_relationship.weight", (2, H)),
        ("cls2.dense.bias", "cls.seq_relationship.bias", (2,)),
    ]
    return [(parent + ms, ours, rng.normal(0, 0.5, shape)) for ms, ours, shape in shapes]


# (cells, pooler cell, parent of the head, head) as the seed saves each network
NETWORKS = {
    "gd_student": ("bert.tinybert_", "bert.", None, None),  # ModelSaveCkpt(netwithloss.bert)
    "gd_standalone": ("tinybert_", "", None, None),  # TinyBertModel saved on its own
    "td_cls": ("bert.bert.bert_", "bert.bert.", "bert.", "cls3"),  # BertModelCLS, 3 labels
    "td_standalone": ("bert.bert_", "bert.", "", "cls2"),  # BertModelCLS saved on its own
    "ner": ("bert.bert.bert_", "bert.bert.", "bert.", "ner5"),  # BertModelNER, 5 labels
    "teacher": ("bert.bert.bert_", "bert.bert.", "bert.", "pretraining"),  # BertPreTraining
}


@pytest.fixture
def vocab(tmp_path: Path) -> Path:
    return write_vocab(tmp_path / "vocab") / "vocab.txt"


def n_tokens(vocab: Path) -> int:
    return len(vocab.read_text().splitlines())


def seed_network(name: str, vocab: Path, seed: int = 0) -> list[tuple]:
    """(seed name, our name in the converted file, array) for every tensor of a seed network."""
    cells, pooler, parent, head = NETWORKS[name]
    rng = np.random.default_rng(seed)
    body = "" if head is None else "bert."
    params = [
        (ms, body + ours, a) for ms, ours, a in seed_params(cells, pooler, n_tokens(vocab), rng)
    ]
    if head is not None:
        params += head_params(parent, head, n_tokens(vocab), rng)
    if head is not None and head.startswith("ner"):  # a token head has no pooler
        params = [p for p in params if not p[1].startswith("bert.pooler.")] + [
            (ms, None, a) for ms, ours, a in params if ours.startswith("bert.pooler.")
        ]
    return params


def write_network(path: Path, params: list[tuple], ms_type: str = "Float32", extra=None) -> Path:
    entries = {ms: np.asarray(a, np.float32) for ms, _, a in params}
    return write_ckpt(path, entries | (extra or {}), ms_type)


def convert(tmp_path: Path, ckpt: Path, vocab: Path, out: str = "out", **kw):
    kw.setdefault("num_attention_heads", HEADS)
    return convert_checkpoint(ckpt, tmp_path / out, vocab, **kw)


# --------------------------------------------------------------------------- the reader


def test_reads_every_dtype_and_scalars_in_file_order(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "w32": ("Float32", rng.normal(size=(3, 4)).astype(np.float32)),
        "w16": ("Float16", rng.normal(size=(5,)).astype(np.float16)),
        "w64": ("Float64", rng.normal(size=(2, 2))),
        "ids": ("Int32", np.arange(6, dtype=np.int32).reshape(2, 3)),
        "big": ("Int64", np.array([2**40, -3], dtype=np.int64)),
        "flags": ("Bool", np.array([True, False, True])),
        "bf16": ("BFloat16", np.array([1.5, -2.0, 3.25], np.float32)),  # exact in bfloat16
    }
    entries = {k: (t, list(a.shape), _content(a, t)) for k, (t, a) in arrays.items()}
    entries["lr"] = ("Float32", [], _content(np.array(5e-5, np.float32), "Float32"))
    entries["step"] = ("Int64", [0], _content(np.array(7), "Int64"))  # MindSpore < 2.3 scalar
    entries["note"] = ("str", [0], "hello".encode("utf-32-le"))  # append_dict={"note": ...}
    got = read_entries(write_ckpt(tmp_path / "a.ckpt", entries))
    assert list(got) == list(entries)
    for k, (t, a) in arrays.items():
        assert got[k].ms_type == t and got[k].array.shape == a.shape
        np.testing.assert_array_equal(got[k].array, a)
    assert got["bf16"].array.dtype == np.float32
    assert got["lr"].array.shape == () and got["lr"].array == np.float32(5e-5)
    assert got["step"].array.shape == () and got["step"].array == 7
    assert str(got["note"].array) == "hello"


def test_joins_chunks_of_one_tag_and_checks_the_crc_trailer(tmp_path):
    big = np.random.default_rng(2).normal(size=(40, 30)).astype(np.float32)
    path = write_ckpt(tmp_path / "a.ckpt", {"big": big, "b": np.ones(3, np.float32)}, chunks=3)
    assert path.read_bytes().count(b"big") == 3  # really three records
    np.testing.assert_array_equal(read_checkpoint(path)["big"], big)
    body = path.read_bytes()
    crc = b"crc_num" + binascii.crc32(body).to_bytes(10, "big")  # MindSpore >= 2.3, crc_check
    path.write_bytes(body + crc)
    np.testing.assert_array_equal(read_checkpoint(path)["big"], big)
    path.write_bytes(body + b"crc_num" + (binascii.crc32(body) + 1).to_bytes(10, "big"))
    with pytest.raises(UserError, match="CRC check failed"):
        read_checkpoint(path)


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_reader_errors_name_the_file_and_the_problem(tmp_path):
    good = write_ckpt(tmp_path / "good.ckpt", {"w": np.ones((4, 8), np.float32)})
    cases = {
        "odd.ckpt": (_record("w", [2], "Complex64", b"\0" * 16), "tensor_type 'Complex64'"),
        "cut.ckpt": (good.read_bytes()[:-20], "truncated or corrupt"),
        "short.ckpt": (_record("w", [4, 8], "Float32", b"\0" * 100), "needs 128"),
        "text.ckpt": (b"hello, this is not a checkpoint\n", "not a MindSpore checkpoint"),
        "zip.ckpt": (b"PK\x03\x04" + b"\0" * 40, "not a MindSpore checkpoint"),
        "empty.ckpt": (b"", "empty"),
        "twice.ckpt": (
            good.read_bytes() + _record("b", [1], "Float32", b"\0" * 4) + good.read_bytes(),
            "'w' occurs twice",
        ),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            read_checkpoint(tmp_path / name)
        assert name in _one_line(e) and expected in str(e.value), (name, str(e.value))
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "absent.ckpt")


def test_reads_mindspores_safetensors_format(tmp_path):
    from safetensors.numpy import save_file

    weights = {"bert.dense.weight": np.ones((2, 3), np.float16), "global_step": np.array([4])}
    save_file(weights, tmp_path / "m.safetensors")  # save_checkpoint(format="safetensors")
    got = read_entries(tmp_path / "m.safetensors")
    assert got["bert.dense.weight"].ms_type == "Float16" and got["global_step"].ms_type == "Int64"
    np.testing.assert_array_equal(got["bert.dense.weight"].array, weights["bert.dense.weight"])


# --------------------------------------------------------------------------- the name map


@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_seed_tensor_lands_on_its_name_exactly_once(tmp_path, vocab, network):
    params = seed_network(network, vocab)
    ckpt = write_network(tmp_path / f"{network}.ckpt", params)
    head = "token" if network == "ner" else None
    result = convert(tmp_path, ckpt, vocab, head=head)
    saved = load_file(tmp_path / "out" / "model.safetensors")
    used = [(ms, ours, a) for ms, ours, a in params if ours is not None]
    assert sorted(saved) == sorted(ours for _, ours, _ in used)
    for _, ours, a in used:
        np.testing.assert_array_equal(saved[ours], np.asarray(a, np.float32), err_msg=ours)
    assert result.tensors_used == len(used)
    expected_head = {None: "encoder", "pretraining": "pretraining"}.get(
        NETWORKS[network][3], "token" if network == "ner" else "sequence"
    )
    assert result.head == expected_head
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [result.architecture]
    assert config["hidden_act"] == "gelu_new" and config["layer_norm_eps"] == 1e-7
    assert config.get("classifier_activation") == (
        "relu" if expected_head in ("sequence", "token") else None
    )
    skipped = {"pooler (a token head has none)": 2} if network == "ner" else {}
    assert result.skipped == skipped


def test_fp16_checkpoint_converts_exactly(tmp_path, vocab):
    params = seed_network("td_cls", vocab)
    ckpt = write_network(tmp_path / "fp16.ckpt", params, ms_type="Float16")
    result = convert(tmp_path, ckpt, vocab)
    saved = load_file(tmp_path / "out" / "model.safetensors")
    for _, ours, a in params:
        assert saved[ours].dtype == np.float32
        np.testing.assert_array_equal(saved[ours], np.asarray(a, np.float16).astype(np.float32))
    assert f"{result.tensors_used} Float16" in result.summary()[0]


def test_non_model_entries_are_skipped_and_counted(tmp_path, vocab):
    params = seed_network("gd_student", vocab)
    rng = np.random.default_rng(3)
    extra = {f"adam_{m}.{ms}": np.zeros_like(a) for m in "mv" for ms, _, a in params[:3]}
    extra |= {
        "global_step": ("Int32", [1], _content(np.array([7]), "Int32")),
        "learning_rate": ("Float32", [], _content(np.array(1e-4), "Float32")),
        "scale_sense": ("Float32", [], _content(np.array(65536.0), "Float32")),
        "current_iterator_step": ("Int32", [], _content(np.array(3), "Int32")),
        "fit_dense.weight": rng.normal(size=(32, H)).astype(np.float32),
        "fit_dense.bias": rng.normal(size=(32,)).astype(np.float32),
        "epoch_note": ("str", [0], "3".encode("utf-32-le")),
    }
    # the frozen teacher inside the GD network (BertNetworkWithLoss_gd saved whole)
    teacher = seed_params("teacher.bert_", "teacher.", n_tokens(vocab), rng)
    extra |= {ms: a for ms, _, a in teacher}
    ckpt = write_network(tmp_path / "state.ckpt", params, extra=extra)
    result = convert(tmp_path, ckpt, vocab)
    assert result.prefix == "bert." and result.tensors_used == len(params)
    assert result.skipped == {
        "optimizer state": 6,
        "training state": 4,
        "distillation projection (fit_dense)": 2,
        "metadata": 1,
        "another network ('teacher.')": len(teacher),
    }
    assert any(line.startswith("skipped 6 optimizer state: adam_m.") for line in result.summary())
    # the teacher can be taken instead
    result = convert(tmp_path, ckpt, vocab, out="teacher", prefix="teacher")
    saved = load_file(tmp_path / "teacher" / "model.safetensors")
    np.testing.assert_array_equal(saved["embeddings.word_embeddings.weight"], teacher[0][2])
    assert result.skipped["another network ('bert.')"] == len(params)


def test_unknown_tensor_is_an_error_naming_it(tmp_path, vocab):
    params = seed_network("td_cls", vocab)
    extra = {"bert.bert.bert_encoder.layers.0.attention.attention.rotary.weight": np.ones((4, 4))}
    ckpt = write_network(tmp_path / "odd.ckpt", params, extra=extra)
    with pytest.raises(UserError) as e:
        convert(tmp_path, ckpt, vocab)
    message = _one_line(e)
    assert "layers.0.attention.attention.rotary.weight" in message
    assert "expected bert.bert.bert_*" in message
    assert not (tmp_path / "out").exists()


def test_missing_tensor_is_an_error_naming_it(tmp_path, vocab):
    params = seed_network("td_cls", vocab)
    gone = "bert.bert.bert_encoder.layers.1.intermediate.bias"
    ckpt = write_network(tmp_path / "cut.ckpt", [p for p in params if p[0] != gone])
    with pytest.raises(UserError) as e:
        convert(tmp_path, ckpt, vocab)
    assert gone in _one_line(e) and "missing" in str(e.value)
    half_head = [p for p in params if p[0] != "bert.dense_1.bias"]
    with pytest.raises(UserError, match="bert.dense_1.bias"):
        convert(tmp_path, write_network(tmp_path / "half.ckpt", half_head), vocab)


def test_a_tensor_of_the_wrong_shape_is_an_error_naming_it(tmp_path, vocab):
    params = seed_network("td_cls", vocab)
    bad = "bert.bert.bert_encoder.layers.1.output.dense.weight"
    params = [(ms, o, np.zeros((H, INTER + 1)) if ms == bad else a) for ms, o, a in params]
    with pytest.raises(UserError) as e:
        convert(tmp_path, write_network(tmp_path / "bad.ckpt", params), vocab)
    assert f"{bad} is ({H}, {INTER + 1}), expected ({H}, {INTER})" in _one_line(e)


# --------------------------------------------------------------------------- the seed's config


SEED_YAML = """\
# Builtin Configurations (DO NOT CHANGE ...)
enable_modelarts: False
task_type: "{task}"
num_labels: {labels}
td_teacher_net_cfg:
    seq_length: 64
    vocab_size: 30522
    hidden_size: 768
    num_hidden_layers: 12
    num_attention_heads: 12
    intermediate_size: 3072
    hidden_act: "gelu"
    max_position_embeddings: 512
    type_vocab_size: 2
    use_relative_positions: False
    dtype: mstype.float32
    compute_type: mstype.float16
td_student_net_cfg:
    seq_length: 24
    vocab_size: {vocab}
    hidden_size: {hidden}
    num_hidden_layers: 2
    num_attention_heads: 8
    intermediate_size: 20
    hidden_act: "gelu"
    max_position_embeddings: 32
    type_vocab_size: 2
    use_relative_positions: False
    dtype: mstype.float32
    compute_type: mstype.float16
---
# Help description for each configuration
task_type: "The type of the task to train."
"""


def seed_yaml(path: Path, vocab: Path, task="classification", labels=5, hidden=H) -> Path:
    text = SEED_YAML.format(task=task, labels=labels, vocab=n_tokens(vocab), hidden=hidden)
    path.write_text(text)
    return path


def test_seed_config_gives_heads_and_task_and_must_agree(tmp_path, vocab):
    ckpt = write_network(tmp_path / "ner.ckpt", seed_network("ner", vocab))
    yaml_file = seed_yaml(tmp_path / "td_config_ner.yaml", vocab, task="ner")
    result = convert_checkpoint(ckpt, tmp_path / "out", vocab, None, yaml_file)
    assert result.head == "token" and result.config.num_attention_heads == 8
    assert any("td_student_net_cfg agrees" in line for line in result.summary())

    wrong = seed_yaml(tmp_path / "wrong.yaml", vocab, task="ner", hidden=24)
    with pytest.raises(UserError) as e:
        convert_checkpoint(ckpt, tmp_path / "out2", vocab, None, wrong)
    message = _one_line(e)
    assert "wrong.yaml" in message and "td_student_net_cfg.hidden_size is 24" in message
    assert f"the checkpoint has {H}" in message
    labels = seed_yaml(tmp_path / "labels.yaml", vocab, task="ner", labels=3)
    with pytest.raises(UserError, match="num_labels is 3 but the checkpoint's dense_1 has 5"):
        convert_checkpoint(ckpt, tmp_path / "out3", vocab, None, labels)
    with pytest.raises(UserError, match="contradicts the seed config's task_type 'ner'"):
        convert_checkpoint(ckpt, tmp_path / "out4", vocab, None, yaml_file, head="sequence")


def test_heads_are_assumed_only_by_a_stated_rule(tmp_path, vocab):
    ckpt = write_network(tmp_path / "gd.ckpt", seed_network("gd_student", vocab))
    with pytest.raises(UserError, match="attention heads cannot be guessed"):
        convert_checkpoint(ckpt, tmp_path / "out", vocab)  # hidden 16: neither 12 nor 64 divide
    result = convert_checkpoint(ckpt, tmp_path / "out", vocab, num_attention_heads=2)
    assert result.config.num_attention_heads == 2
    assert "2 attention heads (given)" in result.summary()[1]
    # the rule, for the shapes it meets: 12 heads where 12 divides (the seed's 384, BERT-base's
    # 768, TinyBERT's 312), else hidden / 64 (BERT-large 1024, BERT-mini 256)
    rule = {h: _num_heads(h, None, None, ckpt) for h in (384, 768, 312, 1024, 256)}
    assert rule == {384: (12, "assumed"), 768: (12, "assumed"), 312: (12, "assumed")} | {
        1024: (16, "assumed"),
        256: (4, "assumed"),
    }


# --------------------------------------------------------------------------- the directory


def test_labels_vocab_and_output_checks(tmp_path, vocab):
    ckpt = write_network(tmp_path / "cls.ckpt", seed_network("td_cls", vocab))
    result = convert(tmp_path, ckpt, vocab, labels=["neg", "neu", "pos"])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert result.config.id2label == ("neg", "neu", "pos")
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == vocab.read_bytes()
    tok = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok["do_lower_case"] is True
    with pytest.raises(UserError, match="exists and is not empty"):
        convert(tmp_path, ckpt, vocab)
    with pytest.raises(UserError, match="2 labels given"):
        convert(tmp_path, ckpt, vocab, out="two", labels=["a", "b"])
    longer = tmp_path / "long_vocab.txt"
    longer.write_text(vocab.read_text() + "extra\n")
    with pytest.raises(UserError, match="tokens but the checkpoint's word embeddings have"):
        convert(tmp_path, ckpt, longer, out="long")
    shorter = tmp_path / "short_vocab.txt"
    shorter.write_text("".join(vocab.read_text().splitlines(keepends=True)[:-2]))
    result = convert(tmp_path, ckpt, shorter, out="short")
    assert any("are never used" in line for line in result.summary())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert leftovers == [] and not (tmp_path / "two").exists()


def _inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


@pytest.mark.parametrize(
    "network, head, auto",
    [
        ("td_cls", "sequence", transformers.AutoModelForSequenceClassification),
        ("ner", "token", transformers.AutoModelForTokenClassification),
        ("gd_student", "encoder", transformers.AutoModel),
    ],
)
def test_loads_in_tinybert_and_transformers_with_equal_outputs(
    tmp_path, vocab, network, head, auto
):
    ckpt = write_network(tmp_path / "m.ckpt", seed_network(network, vocab))
    convert(tmp_path, ckpt, vocab, head="token" if head == "token" else None)
    ours, report = load_model(tmp_path / "out", head=head)
    assert report.initialised == [] and report.ignored == []
    hf, info = auto.from_pretrained(
        tmp_path / "out", output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    hf.eval()
    ids, mask, types = _inputs(n_tokens(vocab))
    with torch.no_grad():
        got = ours(ids, mask, types, output_hidden_states=True)  # every row of the last layer
        want = hf(
            input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True
        )
    real = mask.bool()
    last = want.hidden_states[-1] if head != "encoder" else want.last_hidden_state
    torch.testing.assert_close(got.last_hidden_state[real], last[real], atol=ATOL, rtol=0)
    if head == "encoder":
        torch.testing.assert_close(got.pooled_output, want.pooler_output, atol=ATOL, rtol=0)
        return
    # transformers has no ReLU before the classifier (classifier_activation is ours): its
    # classifier on relu(features) is the seed's head, which ours computes.
    features = got.pooled_output if head == "sequence" else got.last_hidden_state
    with torch.no_grad():
        seed_logits = hf.classifier(torch.relu(features))
    torch.testing.assert_close(got.logits, seed_logits, atol=ATOL, rtol=0)


def test_a_head_trained_outside_the_seed_can_drop_the_relu(tmp_path, vocab):
    ckpt = write_network(tmp_path / "cls.ckpt", seed_network("td_cls", vocab))
    result = convert(tmp_path, ckpt, vocab, classifier_activation=None)
    assert (
        json.loads((tmp_path / "out" / "config.json").read_text())["classifier_activation"] is None
    )
    assert any("not the seed's ReLU" in line for line in result.summary())
    ours, _ = load_model(tmp_path / "out")
    ids, mask, types = _inputs(n_tokens(vocab))
    with torch.no_grad():
        got = ours(ids, mask, types)
        torch.testing.assert_close(got.logits, ours.classifier(got.pooled_output))


def test_teacher_with_pretraining_heads_loads_as_mlm(tmp_path, vocab):
    ckpt = write_network(tmp_path / "teacher.ckpt", seed_network("teacher", vocab))
    convert(tmp_path, ckpt, vocab)
    ours, _ = load_model(tmp_path / "out", head="mlm")
    hf, info = transformers.BertForPreTraining.from_pretrained(
        tmp_path / "out", output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask, types = _inputs(n_tokens(vocab))
    with torch.no_grad():
        got = ours(ids, mask, types).logits
        want = hf.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(got[real], want.prediction_logits[real], atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- the real thing


def _fixture() -> tuple[dict, dict]:
    files = [FIXTURE / "outputs.npz", FIXTURE / "manifest.json"]
    absent = [p.name for p in files if not p.is_file()]
    if absent:
        pytest.skip(f"MindSpore fixture incomplete ({', '.join(absent)} missing in {FIXTURE})")
    outputs = dict(np.load(files[0]))
    return outputs, json.loads(files[1].read_text())


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[dict, dict, Path]:
    """MindSpore's outputs, the manifest, and the fixture's checkpoints converted."""
    outputs, manifest = _fixture()
    out = tmp_path_factory.mktemp("converted")
    heads = manifest["checkpoints"]["gd_student.ckpt"]["shape"]["heads"]
    for name in manifest["checkpoints"]:
        head = "token" if "ner" in name else None
        convert_checkpoint(
            FIXTURE / name, out / name, FIXTURE / "vocab.txt", head=head, num_attention_heads=heads
        )
    return outputs, manifest, out


def _run(model, outputs: dict, **kw):
    args = (outputs[k].astype(np.int64) for k in ("input_ids", "input_mask", "token_type_ids"))
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in args), **kw)


def test_reader_sees_exactly_the_manifests_parameters(real):
    _, manifest, _ = real
    for name, entry in manifest["checkpoints"].items():
        got = read_entries(FIXTURE / name)
        want = entry["parameters"]
        assert list(got) == list(want), name
        for tag, description in want.items():
            dtype, shape = description.split(" ", 1)
            assert f"{got[tag].array.dtype} {list(got[tag].array.shape)}" == (
                f"{np.dtype(dtype)} {json.loads(shape)}"
            ), tag


def test_gd_student_reproduces_mindspore(real):
    outputs, _, out = real
    for name in ("gd_student.ckpt", "gd_student_train_state.ckpt"):
        model, _ = load_model(out / name, head="encoder")
        got = _run(model, outputs, output_hidden_states=True, output_attention_scores=True)
        seq, pooled = got.last_hidden_state.numpy(), got.pooled_output.numpy()
        np.testing.assert_allclose(seq, outputs["gd_sequence_output"], atol=PARITY, rtol=0)
        np.testing.assert_allclose(pooled, outputs["gd_pooled_output"], atol=PARITY, rtol=0)
        hidden = torch.stack(got.hidden_states).numpy()
        np.testing.assert_allclose(hidden, outputs["gd_hidden_states"], atol=PARITY, rtol=0)
        # scores agree where a key is real; padded keys get -10000 there, finfo.min here
        scores, want = torch.stack(got.attention_scores).numpy(), outputs["gd_attention_scores"]
        keys = outputs["input_mask"].astype(bool)[None, :, None, None, :]
        keys = np.broadcast_to(keys, want.shape)
        np.testing.assert_allclose(scores[keys], want[keys], atol=PARITY, rtol=0)
        assert (want[~keys] < -9000).all() and (scores[~keys] < -1e30).all()


def test_td_classifier_reproduces_mindspore(real):
    outputs, _, out = real
    model, _ = load_model(out / "td_cls.ckpt")
    got = _run(model, outputs, output_hidden_states=True)  # every row of the last layer
    np.testing.assert_allclose(got.logits.numpy(), outputs["cls_logits"], atol=PARITY, rtol=0)
    log_probs = torch.log_softmax(got.logits, -1).numpy()
    np.testing.assert_allclose(log_probs, outputs["cls_log_probs"], atol=PARITY, rtol=0)
    seq = got.last_hidden_state.numpy()
    np.testing.assert_allclose(seq, outputs["cls_sequence_output"], atol=PARITY, rtol=0)


def test_ner_fp16_checkpoint_reproduces_mindspore(real):
    outputs, _, out = real
    model, _ = load_model(out / "td_ner_fp16.ckpt", head="token")
    got = _run(model, outputs)
    np.testing.assert_allclose(got.logits.numpy(), outputs["ner_logits"], atol=PARITY, rtol=0)
    log_probs = torch.log_softmax(got.logits, -1).numpy()
    np.testing.assert_allclose(log_probs, outputs["ner_log_probs"], atol=PARITY, rtol=0)
    # The seed calls BertModelNER(ids, mask, types) as (ids, types, mask), in training and in
    # evaluation: given those swapped inputs, ours gives what the seed's evaluation gave.
    ids, mask, types = (
        torch.from_numpy(outputs[k].astype(np.int64))
        for k in ("input_ids", "input_mask", "token_type_ids")
    )
    with torch.no_grad():
        swapped = torch.log_softmax(
            model(ids, attention_mask=types, token_type_ids=mask).logits, -1
        )
    want = outputs["ner_log_probs_seed_call"]
    np.testing.assert_allclose(swapped.numpy(), want, atol=PARITY, rtol=0)


@pytest.mark.skipif(not (FIXTURE / "td_cls.ckpt").is_file(), reason="MindSpore fixture absent")
def test_cli_converts_a_seed_td_model_that_evaluate_runs_on_seed_tfrecords(tmp_path, capsys):
    from tinybert.cli import main

    from .test_tfrecord import seed_rows, write_seed_dataset

    out = tmp_path / "td"
    args = ["convert-mindspore", str(FIXTURE / "td_cls.ckpt"), f"--output={out}"]
    args += [f"--vocab={FIXTURE / 'vocab.txt'}", "--task=sst2", "--num-attention-heads=4"]
    assert main(args) == 0
    rows = seed_rows(10, 1, labels=True)
    data = write_seed_dataset(tmp_path / "sst2", {"train.tfrecord": rows, "dev.tfrecord": rows})
    capsys.readouterr()
    task = ["task.name=sst2", f"task.data_dir={data}", "task.max_seq_length=32"]
    assert main(["evaluate", f"--model={out}", *task]) == 0
    results = json.loads(capsys.readouterr().out)
    # the accuracy of the converted model's own answers on those rows, worked out here
    model, _ = load_model(out)
    ids, mask, types = (
        torch.tensor([row[k] for row in rows]) for k in ("input_ids", "input_mask", "segment_ids")
    )
    with torch.no_grad():
        answers = model(ids, attention_mask=mask, token_type_ids=types).logits.argmax(-1)
    right = sum(int(a) == row["label_ids"][0] for a, row in zip(answers, rows, strict=True))
    assert results["n_examples"] == 10 and results["accuracy"] == right / 10
