"""tinybert.model.hub: HF directory interop both ways, key variants, strict loading, errors."""

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from tinybert.errors import UserError
from tinybert.model import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_model,
    load_model_config,
    save_model,
)
from tinybert.model.hub import serving_tokenizer_config

from .conftest import TINY as TINY_SHAPE

transformers.logging.set_verbosity_error()


TINY = {**TINY_SHAPE, "vocab_size": 99}
ATOL = 1e-5
IDS = torch.tensor([[2, 5, 7, 9, 3], [2, 8, 3, 0, 0]])
MASK = (IDS != 0).long()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


def make(cls=BertForSequenceClassification, **kwargs):
    torch.manual_seed(0)
    return cls(BertConfig(**{**TINY, **kwargs})).eval()


def write_checkpoint(d: Path, config: BertConfig, state: dict, bin_file: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config.to_dict()))
    if bin_file:
        torch.save(state, d / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, d / "model.safetensors")
    return d


# ---------------------------------------------------------------------------------------------
# interop with transformers


@pytest.mark.parametrize(
    "ours_cls, auto_cls",
    [
        (BertForSequenceClassification, transformers.AutoModelForSequenceClassification),
        (BertForTokenClassification, transformers.AutoModelForTokenClassification),
        (BertModel, transformers.AutoModel),
    ],
)
def test_transformers_loads_saved_model_exactly(tmp_path, ours_cls, auto_cls):
    ours = make(ours_cls, num_labels=3, id2label=("neg", "neu", "pos"))
    save_model(ours, tmp_path)
    hf, info = auto_cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert type(hf).__name__ == ours_cls.__name__
    hf.eval()
    with torch.no_grad():
        want = hf(input_ids=IDS, attention_mask=MASK)
        got = ours(input_ids=IDS, attention_mask=MASK)
    if ours_cls is BertModel:
        torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=0)
    cfg = transformers.AutoConfig.from_pretrained(tmp_path)
    assert cfg.id2label == {0: "neg", 1: "neu", 2: "pos"} and cfg.num_labels == 3


@pytest.mark.parametrize(
    "hf_cls, head",
    [
        (transformers.BertForSequenceClassification, "sequence"),
        (transformers.BertForTokenClassification, "token"),
    ],
)
def test_loads_transformers_saved_model(tmp_path, hf_cls, head):
    torch.manual_seed(0)
    hf = hf_cls(transformers.BertConfig(**TINY, id2label={0: "no", 1: "yes"})).eval()
    hf.save_pretrained(tmp_path)
    ours, report = load_model(tmp_path, head=head)
    assert report.initialised == []
    assert ours.config.id2label == ("no", "yes") and ours.config.num_labels == 2
    torch.testing.assert_close(logits(ours), logits(hf), atol=ATOL, rtol=0)


def test_round_trip_with_tokenizer_files(tmp_path):
    model = make(num_labels=1, problem_type="regression")
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tok_dir / "tokenizer_config.json").write_text("{}")
    save_model(model, tmp_path / "out", tokenizer_dir=tok_dir)
    assert (tmp_path / "out" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    assert not (tmp_path / "out" / "tokenizer.json").exists()  # only files that exist are copied
    loaded, report = load_model(tmp_path / "out", head="sequence")
    assert report.initialised == [] and report.ignored == []
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # saving again into the directory the tokenizer comes from is fine
    save_model(loaded, tmp_path / "out", tokenizer_dir=tmp_path / "out")


def test_bert_tokenizer_files_are_copied_byte_for_byte(tmp_path):
    """A BERT student of a BERT teacher: nothing to change, so every file is the teacher's."""
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    files = {
        "vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\n",
        "tokenizer_config.json": '{"do_lower_case":true, "tokenizer_class": "BertTokenizer",'
        ' "model_max_length": 64}',
        "special_tokens_map.json": '{"pad_token": "[PAD]"}',
    }
    for name, text in files.items():
        (tok_dir / name).write_text(text)
    for _ in range(2):  # the second time from the saved directory itself
        save_model(make(), tmp_path / "out", tokenizer_dir=tok_dir)
        tok_dir = tmp_path / "out"
        for name, text in files.items():
            assert (tmp_path / "out" / name).read_text() == text, name


def _tokenizer_json(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps({"model": {"type": kind, "vocab": {}}}))
    return path


@pytest.mark.parametrize(
    "teacher, type_vocab_size, tokenizer_json, changes",
    [
        # nothing to change: None (the teacher's file is kept as it is)
        ({}, 2, None, None),
        ({"tokenizer_class": "BertTokenizer", "model_max_length": 64}, 2, "WordPiece", None),
        (
            {
                "model_input_names": ["input_ids", "attention_mask"],
                "tokenizer_class": "PreTrainedTokenizerFast",
            },
            1,
            "BPE",
            None,
        ),  # fmt: skip
        ({}, 2, "WordPiece", None),  # no class: config.json's "bert" reads a WordPiece file
        # segment ids: none for one token-type row, back for a model that reads them
        ({}, 1, None, {"model_input_names": ["input_ids", "attention_mask"]}),
        (
            {"model_input_names": ["input_ids", "attention_mask"]},
            2,
            None,
            {"model_input_names": ["input_ids", "token_type_ids", "attention_mask"]},
        ),
        # a family class, or no class for a BPE file: the generic one, which reads the file as is
        (
            {"tokenizer_class": "XLMRobertaTokenizer", "add_bos_token": True, "add_eos_token": 0},
            1,
            "Unigram",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "add_bos_token": None,
                "add_eos_token": None,
                "model_input_names": ["input_ids", "attention_mask"],
            },
        ),  # fmt: skip
        ({}, 2, "BPE", {"tokenizer_class": "PreTrainedTokenizerFast"}),
        ({"tokenizer_class": "RobertaTokenizer"}, 2, None, None),  # no tokenizer.json: kept
        # padding and truncation on the right, no longer than the model's positions
        ({"padding_side": "left"}, 2, None, {}),
        ({"truncation_side": "left"}, 2, None, {}),
        ({"model_max_length": 512}, 2, None, {"model_max_length": 64}),
    ],
)
def test_serving_tokenizer_config(tmp_path, teacher, type_vocab_size, tokenizer_json, changes):
    config = BertConfig(**{**TINY, "type_vocab_size": type_vocab_size})
    path = None if tokenizer_json is None else _tokenizer_json(tmp_path, tokenizer_json)
    got = serving_tokenizer_config(teacher, config, path)
    if changes is None:
        assert got is None
        return
    want = teacher | {"padding_side": "right", "truncation_side": "right"} | changes
    assert got == {k: v for k, v in want.items() if v is not None}
    assert serving_tokenizer_config(got, config, path) is None  # saving again changes nothing


def test_student_without_segments_gets_no_token_type_input(tmp_path):
    """The saved tokenizer_config.json: transformers' tokenizer feeds no token_type_ids to a
    model with one token-type row (a type id 1 would index past its table)."""
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"]))
    save_model(make(type_vocab_size=1), tmp_path / "out", tokenizer_dir=tok_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert sorted(tokenizer("a", "b")) == ["attention_mask", "input_ids"]
    assert tokenizer.padding_side == "right"


def test_save_requires_tokenizer_files_when_asked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no tokenizer files"):
        save_model(make(), tmp_path / "out", tokenizer_dir=tmp_path / "empty")


def test_load_dtype_and_eval_mode(tmp_path):
    save_model(make(), tmp_path)
    model, _ = load_model(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training


# ---------------------------------------------------------------------------------------------
# checkpoint variants


def test_old_names_prefixes_and_pretraining_heads_in_bin(tmp_path):
    """An original-BERT style .bin: gamma/beta, MLM+NSP heads, id buffers; prefixed keys."""
    model = make()
    state = {}
    for k, v in model.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        )
        state[k] = v
    extra = {
        "cls.predictions.bias": torch.zeros(99),
        "cls.predictions.transform.dense.weight": torch.zeros(32, 32),
        "cls.seq_relationship.weight": torch.zeros(2, 32),
        "bert.embeddings.position_ids": torch.arange(64)[None],
    }
    write_checkpoint(tmp_path, model.config, {**state, **extra}, bin_file=True)
    loaded, report = load_model(tmp_path)
    assert report.initialised == []
    assert report.ignored == sorted(extra)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


def test_bare_encoder_gets_new_head_and_pooler_reported(tmp_path):
    encoder = make(BertModel)
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    write_checkpoint(tmp_path, encoder.config, state)
    model, report = load_model(tmp_path, head="sequence", num_labels=3, id2label=["a", "b", "c"])
    assert report.initialised == [
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert model.config.num_labels == 3 and model.config.id2label == ("a", "b", "c")
    assert model.config.problem_type == "single_label_classification"
    assert model.classifier.weight.shape == (3, 32)
    # the encoder weights themselves were loaded
    assert torch.equal(
        model.bert.encoder.layer[1].output.dense.weight,
        state["encoder.layer.1.output.dense.weight"],
    )


def test_bare_encoder_with_pooler_for_regression(tmp_path):
    save_model(make(BertModel), tmp_path)
    model, report = load_model(tmp_path, head="sequence", num_labels=1)
    assert report.initialised == ["classifier.weight", "classifier.bias"]
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert logits(model).shape == (2, 1)


def test_unused_heads_are_ignored_and_reported(tmp_path):
    save_model(make(), tmp_path)  # a sequence classifier: pooler + classifier
    token, report = load_model(tmp_path, head="token")
    assert report.ignored == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    encoder, report = load_model(tmp_path, head="encoder")
    assert report.ignored == ["classifier.bias", "classifier.weight"] and report.initialised == []
    assert isinstance(encoder, BertModel)


def test_existing_head_must_agree_with_requested_labels(tmp_path):
    save_model(make(num_labels=2), tmp_path)  # generic names LABEL_0, LABEL_1
    model, _ = load_model(tmp_path, num_labels=2, id2label=["neg", "pos"])
    assert model.config.id2label == ("neg", "pos")  # unnamed head takes the names
    with pytest.raises(UserError, match="trained 2-label head but 3 labels"):
        load_model(tmp_path, num_labels=3)
    save_model(model, tmp_path)
    with pytest.raises(UserError, match=r"trained for labels \['neg', 'pos'\]"):
        load_model(tmp_path, id2label=["pos", "neg"])


def test_sharded_safetensors(tmp_path):
    model = make()
    state = model.state_dict()
    keys = list(state)
    halves = {"model-1.safetensors": keys[:10], "model-2.safetensors": keys[10:]}
    for name, ks in halves.items():
        save_file({k: state[k].contiguous() for k in ks}, tmp_path / name)
    index = {"weight_map": {k: name for name, ks in halves.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    loaded, _ = load_model(tmp_path)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# errors


def test_every_mismatch_is_listed_in_one_error(tmp_path):
    model = make()
    state = dict(model.state_dict())
    del state["bert.encoder.layer.0.attention.self.key.bias"]
    state["bert.encoder.layer.1.output.dense.weight"] = torch.zeros(32, 40)
    state["classifier.weight"] = torch.zeros(5, 32)
    state["bert.encoder.layer.2.output.dense.weight"] = torch.zeros(32, 37)
    state["qa_outputs.weight"] = torch.zeros(2, 32)
    write_checkpoint(tmp_path, model.config, state)
    with pytest.raises(UserError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "model.safetensors") in msg
    for expected in (
        "missing from the checkpoint (1): bert.encoder.layer.0.attention.self.key.bias",
        "bert.encoder.layer.2.output.dense.weight",
        "qa_outputs.weight",
        "bert.encoder.layer.1.output.dense.weight: model (32, 37), checkpoint (32, 40)",
        "classifier.weight: model (2, 32), checkpoint (5, 32)",
    ):
        assert expected in msg


def test_partial_head_is_missing_not_initialised(tmp_path):
    model = make()
    state = {k: v for k, v in model.state_dict().items() if k != "classifier.bias"}
    write_checkpoint(tmp_path, model.config, state)
    with pytest.raises(UserError, match="missing from the checkpoint \\(1\\): classifier.bias"):
        load_model(tmp_path)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(UserError, match="model directory not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(UserError, match=f"{tmp_path / 'config.json'}: not found"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BertConfig(**TINY).to_dict()))
    with pytest.raises(UserError, match=f"{tmp_path}: no weights file found"):
        load_model(tmp_path)


def test_bad_config_and_corrupt_weights(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "hidden_size": 32,\n  oops\n}')
    with pytest.raises(UserError, match=r"config.json:3: invalid JSON"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(UserError, match="model_type is 'roberta'"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "num_attention_heads": 5}))
    with pytest.raises(UserError, match="config.json: model config: hidden_size 32"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BertConfig(**TINY).to_dict()))
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="model.safetensors: cannot read weights"):
        load_model(tmp_path)


def test_bad_head_name(tmp_path):
    with pytest.raises(UserError, match="unknown model head 'qa'"):
        load_model(tmp_path, head="qa")


def test_saved_files_are_plain_and_contiguous(tmp_path):
    model = make(BertForTokenClassification, num_labels=4)
    save_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    state = load_file(tmp_path / "model.safetensors")
    assert set(state) == set(model.state_dict())
    assert not any(k.startswith("bert.pooler") for k in state)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["BertForTokenClassification"] and cfg["model_type"] == "bert"
