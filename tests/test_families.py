"""Teachers of every supported family answer exactly as transformers' own eager models do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from tests.families import HEAD_CLASSES, MODEL_TYPES, write_teacher
from tinybert.data.tokenization import model_token_types
from tinybert.errors import UserError
from tinybert.model import BertConfig, BertForSequenceClassification, BertForTokenClassification
from tinybert.model.teachers import (
    FAMILIES,
    HFModel,
    load_any_model,
    model_family,
    save_any_model,
)


def _inputs(pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of 12 tokens, two of them right-padded (8 and 5 real tokens)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    return ids.masked_fill(mask == 0, pad), mask


def _reference(path: Path, head: str) -> torch.nn.Module:
    auto = getattr(transformers, HEAD_CLASSES[head])
    return auto.from_pretrained(path, attn_implementation="eager").eval()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("head", ["sequence", "token", "encoder", "mlm"])
def test_outputs_equal_transformers_eager(tmp_path: Path, model_type: str, head: str) -> None:
    path = write_teacher(tmp_path / model_type, model_type, head=head, num_labels=3)
    model, report = load_any_model(path, head=head)  # type: ignore[arg-type]
    assert report.initialised == []
    ref = _reference(path, head)
    ids, mask = _inputs(ref.config.pad_token_id)
    with torch.no_grad():
        out = model(ids, mask, torch.zeros_like(ids), True, True)
        want = ref(
            input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True
        )
    real = mask.bool()
    assert out.hidden_states is not None and out.attention_scores is not None
    assert len(out.hidden_states) == len(want.hidden_states) == 3
    for ours, theirs in zip(out.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
    signal = getattr(model, "attention_signal", "scores")
    assert signal == FAMILIES[model_type].attention
    for ours, probs in zip(out.attention_scores, want.attentions, strict=True):
        got = ours.softmax(-1) if signal == "scores" else ours
        rows = real[:, None, :, None].expand_as(probs)  # real query rows
        torch.testing.assert_close(got[rows], probs[rows], atol=1e-5, rtol=1e-5)
    if head == "sequence":
        torch.testing.assert_close(out.logits, want.logits, atol=1e-5, rtol=1e-5)
    elif head != "encoder":
        torch.testing.assert_close(out.logits[real], want.logits[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", [t for t in MODEL_TYPES if t != "bert"])
def test_scores_only_for_the_layers_asked(tmp_path: Path, model_type: str) -> None:
    path = write_teacher(tmp_path / model_type, model_type, head="encoder")
    model, _ = load_any_model(path, head="encoder")
    ids, mask = _inputs(model.config.pad_token_id)
    with torch.no_grad():
        out = model(ids, mask, output_attention_scores=[1])
        plain = model(ids, mask, output_hidden_states=True)
    assert out.attention_scores is not None
    assert out.attention_scores[0] is None and out.attention_scores[1] is not None
    assert plain.attention_scores is None and plain.hidden_states is not None
    # no score collection is left behind on the modules
    assert not any(hasattr(m, "_tinybert_scores") for m in model.modules())


def test_modernbert_local_layers_mask_outside_the_window(tmp_path: Path) -> None:
    """Layer 0 is global, layer 1 local with an 8-token window (local_attention=8): keys more
    than 4 positions away hold finfo.min, exactly as padding does; what they mask is what
    transformers masks (its probabilities there are 0)."""
    path = write_teacher(tmp_path / "mb", "modernbert", head="encoder")
    model, _ = load_any_model(path, head="encoder")
    ids = torch.randint(5, 100, (1, 12))
    with torch.no_grad():
        scores = model(ids, output_attention_scores=True).attention_scores
    assert scores is not None
    low = torch.finfo(torch.float32).min
    assert not (scores[0] == low).any()
    far = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs() > 4
    assert ((scores[1][0] == low) == far.expand(4, 12, 12)).all()


def test_unsupported_model_type_names_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError) as e:
        load_any_model(tmp_path, head="sequence")
    msg = str(e.value)
    assert "model_type 'gpt2' is not supported" in msg and "\n" not in msg
    for name in FAMILIES:
        assert name in msg


def test_token_types_per_family(tmp_path: Path) -> None:
    readers = {t for t in MODEL_TYPES if model_token_types(write_teacher(tmp_path / t, t))}
    assert readers == {"bert", "electra"}
    assert model_family(tmp_path / "roberta").label == "RoBERTa"


def test_trained_head_must_agree_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    path = write_teacher(tmp_path / "r", "roberta", head="sequence", num_labels=3)
    with pytest.raises(UserError, match="trained 3-label head but 2 labels"):
        load_any_model(path, head="sequence", num_labels=2)
    bare = write_teacher(tmp_path / "bare", "roberta", head="encoder")
    model, report = load_any_model(bare, head="sequence", id2label=["neg", "pos"])
    assert isinstance(model, HFModel)
    assert report.initialised and all(k.startswith("classifier.") for k in report.initialised)
    assert model.config.id2label == ("neg", "pos")
    with pytest.raises(UserError, match="mlm"):
        load_any_model(path, head="mlm")


def test_save_round_trips_through_auto_classes(tmp_path: Path) -> None:
    path = write_teacher(tmp_path / "d", "deberta-v2", head="sequence")
    model, _ = load_any_model(path, head="sequence")
    save_any_model(model, tmp_path / "out", tokenizer_dir=path)
    again = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "deberta-v2"
    ids, mask = _inputs(0)
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, mask).logits, again(input_ids=ids, attention_mask=mask).logits
        )
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    transformers.AutoTokenizer.from_pretrained(tmp_path / "out")


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "electra", "distilbert"])
def test_bert_shaped_weights_make_the_same_bert(tmp_path: Path, model_type: str) -> None:
    """The BERT-named weights of a RoBERTa/XLM-R/ELECTRA/DistilBERT teacher, loaded into
    tinybert's BERT, compute the teacher's hidden states (RoBERTa's positions shifted by
    pad_token_id + 1): what student.init=teacher_layers and weight selection build on."""
    path = write_teacher(tmp_path / model_type, model_type, head="token", num_labels=3)
    teacher, _ = load_any_model(path, head="token")
    assert isinstance(teacher, HFModel)
    state = teacher.bert_state_dict()
    bert = BertForTokenClassification(teacher.config)
    bert.load_state_dict(state)  # every tensor (DistilBERT: a zero token-type row)
    bert.eval()
    ids, mask = _inputs(teacher.config.pad_token_id or 0)
    with torch.no_grad():
        ours = bert(ids, mask, output_hidden_states=True)
        theirs = teacher(ids, mask, output_hidden_states=True)
    real = mask.bool()
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-5, rtol=1e-5)


def test_roberta_sequence_head_is_berts_pooler_and_classifier(tmp_path: Path) -> None:
    path = write_teacher(tmp_path / "r", "roberta", head="sequence", num_labels=2)
    teacher, _ = load_any_model(path, head="sequence")
    assert isinstance(teacher, HFModel)
    bert = BertForSequenceClassification(teacher.config).eval()
    bert.load_state_dict(teacher.bert_state_dict())
    ids, mask = _inputs(teacher.config.pad_token_id or 0)
    with torch.no_grad():
        torch.testing.assert_close(bert(ids, mask).logits, teacher(ids, mask).logits)


@pytest.mark.parametrize("model_type", ["deberta-v2", "modernbert"])
def test_weights_that_are_not_bert_shaped_are_refused(tmp_path: Path, model_type: str) -> None:
    teacher, _ = load_any_model(write_teacher(tmp_path / model_type, model_type), head="sequence")
    assert isinstance(teacher, HFModel)
    with pytest.raises(UserError, match="not BERT's") as e:
        teacher.bert_state_dict()
    assert "\n" not in str(e.value)


def test_summary_config_is_a_student_shape(tmp_path: Path) -> None:
    teacher, _ = load_any_model(write_teacher(tmp_path / "d", "distilbert"), head="sequence")
    config = teacher.config
    assert isinstance(config, BertConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 4)
    assert config.intermediate_size == 37 and config.type_vocab_size == 1
