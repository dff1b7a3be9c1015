"""tinybert.model.bert: numerical parity with transformers' BERT, both attention paths, config."""

import pytest
import torch
import transformers

from tinybert.errors import UserError
from tinybert.model import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_model,
)

from .conftest import SHARED
from .conftest import TINY as TINY_SHAPE

transformers.logging.set_verbosity_error()

MINILM = SHARED / "models" / "all-MiniLM-L6-v2"

TINY = {**TINY_SHAPE, "vocab_size": 99}
ATOL = 1e-5

# head name -> (our class, HF class, num_labels)
HEADS = {
    "sequence": (BertForSequenceClassification, transformers.BertForSequenceClassification, 3),
    "regression": (BertForSequenceClassification, transformers.BertForSequenceClassification, 1),
    "token": (BertForTokenClassification, transformers.BertForTokenClassification, 4),
}


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


def hf_and_ours(head: str, hidden_act: str = "gelu"):
    """A random HF model (eager attention, so it returns attentions) and ours with its weights."""
    ours_cls, hf_cls, n = HEADS[head]
    torch.manual_seed(0)
    hf_cfg = transformers.BertConfig(
        **TINY, num_labels=n, hidden_act=hidden_act, attn_implementation="eager"
    )
    hf = hf_cls(hf_cfg).eval()
    ours = ours_cls(BertConfig.from_dict(hf_cfg.to_dict())).eval()
    hf_state = hf.state_dict()
    # Identical names and shapes: state dicts interchange (strict load checks both).
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in hf_state.items()
    }
    ours.load_state_dict(hf_state, strict=True)
    return hf, ours


@pytest.mark.parametrize("head", list(HEADS))
def test_parity_with_transformers(head):
    hf, ours = hf_and_ours(head)
    inputs = batch()
    with torch.no_grad():
        want = hf(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attention_scores=True)
    torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=0)
    assert len(got.hidden_states) == len(want.hidden_states) == TINY["num_hidden_layers"] + 1
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0)
    # Every row is compared, padded queries included: both models mask keys only, so a padded
    # query attends to the real tokens in both; masked keys get probability exactly 0.
    assert len(got.attention_scores) == len(want.attentions) == TINY["num_hidden_layers"]
    for g, w in zip(got.attention_scores, want.attentions, strict=True):
        assert g.shape == (3, TINY["num_attention_heads"], 7, 7)
        torch.testing.assert_close(g.softmax(-1), w, atol=ATOL, rtol=0)


def test_activation_variants_match_transformers():
    inputs = batch()
    for act in ("gelu_new", "gelu_pytorch_tanh", "relu"):
        hf, ours = hf_and_ours("sequence", hidden_act=act)
        with torch.no_grad():
            torch.testing.assert_close(
                ours(**inputs).logits, hf(**inputs).logits, atol=ATOL, rtol=0
            )


def test_scores_are_scaled_masked_and_pre_softmax():
    _, ours = hf_and_ours("sequence")
    inputs = batch()
    with torch.no_grad():
        out = ours.bert(**inputs, output_hidden_states=True, output_attention_scores=True)
        attn = ours.bert.encoder.layer[0].attention.self
        x = out.hidden_states[0]
        q = attn.query(x).view(3, 7, 4, 8).transpose(1, 2)
        k = attn.key(x).view(3, 7, 4, 8).transpose(1, 2)
        raw = q @ k.transpose(-1, -2) / 8**0.5
    scores = out.attention_scores[0]
    real_key = inputs["attention_mask"].bool()[:, None, None, :].expand_as(scores)
    torch.testing.assert_close(scores[real_key], raw[real_key], atol=ATOL, rtol=0)
    assert (scores[~real_key] == torch.finfo(torch.float32).min).all()


def test_sdpa_path_equals_explicit_path(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    for head in ("sequence", "token"):
        _, ours = hf_and_ours(head)
        inputs = batch()
        calls.clear()
        with torch.no_grad():
            explicit = ours(**inputs, output_hidden_states=True, output_attention_scores=True)
            assert not calls
            fused = ours(**inputs, output_hidden_states=True)
        assert len(calls) == TINY["num_hidden_layers"]
        assert fused.attention_scores is None
        torch.testing.assert_close(fused.logits, explicit.logits, atol=ATOL, rtol=0)
        for f, e in zip(fused.hidden_states, explicit.hidden_states, strict=True):
            torch.testing.assert_close(f, e, atol=ATOL, rtol=0)


def test_scores_of_chosen_layers_only():
    # A phase-1 teacher needs its mapped layers' scores only; the others take the fused path.
    _, ours = hf_and_ours("sequence")
    inputs = batch()
    with torch.no_grad():
        every = ours(**inputs, output_hidden_states=True, output_attention_scores=True)
        some = ours(**inputs, output_hidden_states=True, output_attention_scores=[1])
    assert some.attention_scores[0] is None
    torch.testing.assert_close(
        some.attention_scores[1], every.attention_scores[1], atol=ATOL, rtol=0
    )
    for a, b in zip(some.hidden_states, every.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert ours(**inputs, output_attention_scores=[]).attention_scores is None
    with pytest.raises(ValueError, match="layers \\[2\\]"):
        ours(**inputs, output_attention_scores=[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fully_padded_sequence_gives_no_nan(dtype):
    _, ours = hf_and_ours("sequence")
    ours.to(dtype)
    inputs = batch()
    inputs["attention_mask"][2] = 0  # a sequence with no real token at all
    with torch.no_grad():
        for scores in (False, True):
            out = ours(**inputs, output_hidden_states=True, output_attention_scores=scores)
            assert torch.isfinite(out.logits).all()
            assert all(torch.isfinite(h).all() for h in out.hidden_states)


def test_no_mask_means_all_real_and_defaults():
    _, ours = hf_and_ours("sequence")
    ids = batch()["input_ids"][:1]  # row 0 has no padding
    with torch.no_grad():
        a = ours(ids).logits
        b = ours(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits
        c = ours(ids, output_attention_scores=True).logits
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, b, atol=ATOL, rtol=0)


def test_output_fields_and_shapes():
    cfg = BertConfig(**TINY, num_labels=4)
    ids = batch()["input_ids"]
    bare = BertModel(cfg).eval()(ids)
    assert bare.logits is None and bare.hidden_states is None and bare.attention_scores is None
    assert bare.last_hidden_state.shape == (3, 7, 32) and bare.pooled_output.shape == (3, 32)
    assert BertForSequenceClassification(cfg)(ids).logits.shape == (3, 4)
    token = BertForTokenClassification(cfg)
    assert token.bert.pooler is None  # like HF: the token head has no pooler weights
    assert token(ids).logits.shape == (3, 7, 4)


@pytest.mark.parametrize("scores", [False, True])
def test_sequence_head_computes_the_last_layer_for_cls_alone(scores):
    """The sequence head reads the pooled [CLS] row only, so its last layer computes that row
    alone: same logits and same gradients as the full last layer (hidden states asked for),
    through both attention paths; asking for hidden states or the last layer's scores keeps
    every row (the token head always does: test_output_fields_and_shapes)."""
    _, ours = hf_and_ours("sequence")
    inputs = batch()
    want_scores = [0] if scores else False  # scores of a non-last layer: explicit path there
    fast = ours(**inputs, output_attention_scores=want_scores)
    assert fast.last_hidden_state.shape == (3, 1, 32)
    fast.logits.square().sum().backward()
    fast_grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad()
    full = ours(**inputs, output_hidden_states=True, output_attention_scores=want_scores)
    assert full.last_hidden_state.shape == (3, 7, 32)
    full.logits.square().sum().backward()
    torch.testing.assert_close(fast.logits, full.logits, atol=ATOL, rtol=0)
    for name, param in ours.named_parameters():
        torch.testing.assert_close(fast_grads[name], param.grad, atol=ATOL, rtol=0, msg=name)
    last = TINY["num_hidden_layers"] - 1
    with torch.no_grad():  # the last layer's scores are every row's: the full layer runs
        assert ours(**inputs, output_attention_scores=[last]).last_hidden_state.shape[1] == 7
        ours.to(torch.bfloat16)  # CPU bf16 takes the explicit attention path
        low = ours(**inputs).logits.float()
    torch.testing.assert_close(low, full.logits.detach(), atol=0.05, rtol=0)


def test_training_mode_backward_on_both_paths():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY)).train()
    for scores in (False, True):
        model.zero_grad()
        out = model(**batch(), output_attention_scores=scores)
        out.logits.sum().backward()
        grad = model.bert.encoder.layer[0].attention.self.query.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_weight_init_like_bert():
    torch.manual_seed(0)
    cfg = BertConfig(**TINY, initializer_range=0.02)
    model = BertForSequenceClassification(cfg)
    for name, p in model.named_parameters():
        if "LayerNorm" in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert (p == expected).all(), name
        elif name.endswith("bias"):
            assert (p == 0).all(), name
    word = model.bert.embeddings.word_embeddings.weight
    assert (word[cfg.pad_token_id] == 0).all()
    assert 0.018 < word[1:].std().item() < 0.022
    assert abs(model.bert.encoder.layer[1].intermediate.dense.weight.std().item() - 0.02) < 0.003


def test_too_long_sequence_is_a_user_error():
    model = BertModel(BertConfig(**TINY))
    with pytest.raises(UserError, match="max_position_embeddings"):
        model(torch.ones(1, TINY["max_position_embeddings"] + 1, dtype=torch.long))


def test_config_round_trips_through_hf_json():
    cfg = BertConfig(**TINY, num_labels=3, id2label=["neg", "neu", "pos"])
    assert cfg.id2label == ("neg", "neu", "pos")
    d = cfg.to_dict(architecture="BertForSequenceClassification")
    assert d["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert d["label2id"] == {"neg": 0, "neu": 1, "pos": 2}
    assert d["model_type"] == "bert" and d["architectures"] == ["BertForSequenceClassification"]
    assert BertConfig.from_dict(d) == cfg
    hf = transformers.BertConfig.from_dict(d)
    assert hf.num_labels == 3 and hf.id2label == {0: "neg", 1: "neu", 2: "pos"}
    # HF's own json (extra keys, generic names) reads back; generic names mean "unnamed"
    plain = BertConfig.from_dict(transformers.BertConfig(**TINY, num_labels=5).to_dict())
    assert plain == BertConfig(**TINY, num_labels=5)
    assert BertConfig.from_dict({"num_labels": 1}).num_labels == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=30), "multiple of num_attention_heads"),
        (dict(hidden_act="swish"), "hidden_act 'swish'"),
        (dict(num_labels=2, id2label=("a", "b", "c")), "id2label has 3 names"),
        (dict(pad_token_id=99), "pad_token_id 99"),
    ],
)
def test_invalid_config_is_a_user_error(kwargs, match):
    with pytest.raises(UserError, match=match):
        BertConfig(**{**TINY, **kwargs})


def test_relative_positions_are_refused():
    with pytest.raises(UserError, match="position_embedding_type 'relative_key'"):
        BertConfig.from_dict({**TINY, "position_embedding_type": "relative_key"})


@pytest.mark.shared
@pytest.mark.skipif(not MINILM.is_dir(), reason=f"real model not available: {MINILM} is absent")
def test_parity_on_real_minilm():
    tok = transformers.BertTokenizerFast.from_pretrained(MINILM)
    first = [
        "The movie was a delight from start to finish.",
        "Terrible.",
        "What is the capital of France?",
    ]
    second = [None, None, "Paris is the capital and largest city of France."]
    enc = [tok(a, b) for a, b in zip(first, second, strict=True)]
    inputs = tok.pad(enc, return_tensors="pt")
    assert inputs["attention_mask"].sum(1).min() < inputs["attention_mask"].shape[1]  # padded

    hf = transformers.AutoModel.from_pretrained(MINILM, attn_implementation="eager").eval()
    ours, report = load_model(MINILM, head="encoder")
    assert report.initialised == [] and not ours.training  # loaded in eval mode, like HF
    with torch.no_grad():
        want = hf(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attention_scores=True)
        fused = ours(**inputs)
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0)
    for g, w in zip(got.attention_scores, want.attentions, strict=True):
        torch.testing.assert_close(g.softmax(-1), w, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.pooled_output, want.pooler_output, atol=ATOL, rtol=0)
    # The fused SDPA kernel sums in another order and its result depends on the CPU's kernel
    # choice; hidden values reach ~10, so this self-consistency check (not the parity claim,
    # which is against transformers above) allows 1e-4 at the real positions.
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(
        fused.last_hidden_state[real], got.last_hidden_state[real], atol=1e-4, rtol=1e-5
    )


def test_classifier_activation_applies_relu_before_the_classifier():
    """Heads converted from the MindSpore seed compute dense(relu(features))."""
    torch.manual_seed(0)
    config = BertConfig(**TINY, classifier_activation="relu")
    for model in (BertForSequenceClassification(config), BertForTokenClassification(config)):
        model.eval()
        b = batch()
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        features = out.pooled_output if out.pooled_output is not None else out.last_hidden_state
        assert torch.equal(out.logits, model.classifier(torch.relu(features)))
    with pytest.raises(UserError, match="classifier_activation 'tanh' is not supported"):
        BertConfig(**TINY, classifier_activation="tanh")
