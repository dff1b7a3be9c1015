"""tinybert.model: the masked-LM head (BertForMaskedLM) and its HF directories, both ways."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from tinybert.errors import UserError
from tinybert.model import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    load_model,
    save_model,
)

from .conftest import TINY as TINY_SHAPE

transformers.logging.set_verbosity_error()

TINY = {**TINY_SHAPE, "vocab_size": 99}
ATOL = 1e-5
MLM_KEYS = [  # what save_pretrained writes for the head: the tied decoder is left out
    "cls.predictions.bias",
    "cls.predictions.transform.LayerNorm.bias",
    "cls.predictions.transform.LayerNorm.weight",
    "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.dense.weight",
]


def batch() -> dict[str, torch.Tensor]:
    """3 sequences of 7, 5 and 2 real tokens (right-padded with 0), second segment in row 0."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, TINY["vocab_size"], (3, 7), generator=g)
    mask = torch.zeros(3, 7, dtype=torch.long)
    for row, n in enumerate((7, 5, 2)):
        mask[row, :n] = 1
    types = torch.zeros_like(ids)
    types[0, 4:] = 1
    return dict(input_ids=ids * mask, attention_mask=mask, token_type_ids=types)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch()).logits


def hf_model(cls=transformers.BertForMaskedLM):
    """A random HF model, eval mode; the MLM bias made non-zero so that it is tested too."""
    torch.manual_seed(0)
    hf = cls(transformers.BertConfig(**TINY, attn_implementation="eager")).eval()
    if hasattr(hf, "cls"):
        with torch.no_grad():
            hf.cls.predictions.bias.normal_()
    return hf


def ours_model() -> BertForMaskedLM:
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY)).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    return model


def assert_tied(model: BertForMaskedLM) -> None:
    head = model.cls.predictions
    embedding = model.bert.embeddings.word_embeddings.weight
    assert head.decoder.weight is embedding
    assert head.decoder.weight.data_ptr() == embedding.data_ptr()
    assert head.decoder.bias is head.bias


def test_state_dict_names_are_transformers(tmp_path):
    hf, ours = hf_model(), ours_model()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in hf.state_dict().items()
    }
    ours.load_state_dict(hf.state_dict(), strict=True)
    assert_tied(ours)
    torch.testing.assert_close(logits(ours), logits(hf), atol=ATOL, rtol=0)


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_loads_transformers_mlm_exactly(tmp_path, weights):
    hf = hf_model()
    if weights == "safetensors":
        hf.save_pretrained(tmp_path)  # leaves out the tied decoder weight and bias
        assert not any("decoder" in k for k in load_file(tmp_path / "model.safetensors"))
    else:  # an old-style .bin: every state_dict name, tied aliases included
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours, report = load_model(tmp_path, head="mlm")
    assert isinstance(ours, BertForMaskedLM) and not ours.training
    assert report.initialised == [] and report.ignored == []
    assert_tied(ours)
    got = logits(ours)
    assert got.shape == (3, 7, TINY["vocab_size"])
    torch.testing.assert_close(got, logits(hf), atol=ATOL, rtol=0)


def test_loads_pretraining_checkpoint_ignoring_nsp_and_pooler(tmp_path):
    """bert-base-uncased's layout: BertForPreTraining, with pooler and NSP head."""
    hf = hf_model(transformers.BertForPreTraining)
    with torch.no_grad():
        hf.cls.predictions.bias.normal_()
    hf.save_pretrained(tmp_path)
    ours, report = load_model(tmp_path, head="mlm")
    assert report.initialised == []
    assert report.ignored == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "cls.seq_relationship.bias",
        "cls.seq_relationship.weight",
    ]
    with torch.no_grad():
        want = hf(**batch()).prediction_logits
    torch.testing.assert_close(logits(ours), want, atol=ATOL, rtol=0)


def test_mlm_head_needs_mlm_weights(tmp_path):
    hf_model(transformers.BertModel).save_pretrained(tmp_path)
    with pytest.raises(UserError) as err:
        load_model(tmp_path, head="mlm")
    msg = str(err.value)
    assert "no masked-LM head" in msg and "BertForMaskedLM" in msg
    assert f"missing from the checkpoint ({len(MLM_KEYS)})" in msg
    for key in MLM_KEYS:
        assert key in msg
    assert "decoder" not in msg  # the tie supplies it


def test_untied_decoder_is_refused(tmp_path):
    hf = hf_model()
    hf.config.save_pretrained(tmp_path)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["cls.predictions.decoder.weight"] += 1
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="tied tensors that differ") as err:
        load_model(tmp_path, head="mlm")
    assert (
        "cls.predictions.decoder.weight differs from bert.embeddings.word_embeddings.weight"
        in str(err.value)
    )


def test_other_heads_ignore_mlm_weights(tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path)
    encoder, report = load_model(tmp_path, head="encoder")
    assert isinstance(encoder, BertModel)
    assert report.ignored == MLM_KEYS  # as before the MLM head existed
    assert report.initialised == ["pooler.dense.weight", "pooler.dense.bias"]  # HF's has none
    with torch.no_grad():
        want = hf.bert(**batch()).last_hidden_state
        got = encoder(**batch()).last_hidden_state
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    for head in ("sequence", "token"):
        model, report = load_model(tmp_path, head=head, num_labels=3)
        assert report.ignored == MLM_KEYS
        assert all(k.startswith(("bert.pooler.", "classifier.")) for k in report.initialised)
        assert isinstance(model, BertForSequenceClassification) == (head == "sequence")


def test_saved_mlm_loads_in_transformers(tmp_path):
    ours = ours_model()
    save_model(ours, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["BertForMaskedLM"]
    assert sorted(k for k in load_file(tmp_path / "model.safetensors") if k.startswith("cls.")) == (
        MLM_KEYS
    )
    hf, info = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert type(hf).__name__ == "BertForMaskedLM"
    hf.eval()
    torch.testing.assert_close(logits(hf), logits(ours), atol=ATOL, rtol=0)
    # and back: exactly the same tensors, still tied, also after a dtype change
    loaded, report = load_model(tmp_path, head="mlm")
    assert report.initialised == [] and report.ignored == []
    for (k, a), (_, b) in zip(ours.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    half, _ = load_model(tmp_path, head="mlm", dtype=torch.bfloat16)
    assert_tied(half)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_decoder_is_tied_to_word_embeddings():
    model = ours_model()
    assert_tied(model)
    # one Parameter under two names: it is trained (and counted) once
    names = [n for n, _ in model.named_parameters()]
    assert "cls.predictions.decoder.weight" not in names and "cls.predictions.bias" in names
    h = torch.randn(2, 3, TINY["hidden_size"])
    with torch.no_grad():
        before = model.cls(h)
        model.bert.embeddings.word_embeddings.weight[5] += 1.0
        after = model.cls(h)
    changed = (before != after).any(dim=(0, 1))
    assert changed.nonzero().flatten().tolist() == [5]  # word 5's score, and only it
