"""The stage objectives wired to real models: a student equal to its teacher has zero loss."""

from __future__ import annotations

import pytest
import torch

from tinybert.config import DistillConfig, StudentConfig
from tinybert.data import get_task
from tinybert.distill.objectives import IntermediateLoss, PredictionLoss, teacher_logits
from tinybert.distill.projection import HiddenProjection
from tinybert.distill.student import build_student
from tinybert.errors import UserError
from tinybert.model import BertConfig, BertForSequenceClassification
from tinybert.train.loop import TrainData
from tinybert.train.objective import Batch

from .conftest import TINY

SST2 = get_task("sst2")
HEAD = {"head": SST2.head, **SST2.head_args}


@pytest.fixture
def teacher() -> BertForSequenceClassification:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, id2label=("0", "1"), **TINY))
    return model.eval()


def batch(n: int = 3, t: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, 4:] = 0  # one padded example
    return {
        "input_ids": torch.randint(5, 50, (n, t), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(n, t, dtype=torch.long),
        "index": torch.arange(n),
        "labels": torch.zeros(n, dtype=torch.long),
    }


def test_teacher_layers_init_copies_the_chosen_layers(teacher):
    student = build_student(
        StudentConfig(init="teacher_layers", teacher_layers=(2,)), teacher, **HEAD
    )
    assert student.config.num_hidden_layers == 1
    s, t = student.state_dict(), teacher.state_dict()
    assert torch.equal(
        s["bert.encoder.layer.0.attention.self.query.weight"],
        t["bert.encoder.layer.1.attention.self.query.weight"],
    )
    for name in (
        "bert.embeddings.word_embeddings.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    ):
        assert torch.equal(s[name], t[name])


def test_teacher_layers_out_of_range_is_a_config_error(teacher):
    with pytest.raises(UserError, match=r"student.teacher_layers.*1\.\.2"):
        build_student(StudentConfig(init="teacher_layers", teacher_layers=(1, 3)), teacher, **HEAD)


def test_random_student_takes_vocab_from_teacher_and_labels_from_task(teacher):
    student = build_student(
        StudentConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=4, intermediate_size=20
        ),
        teacher,
        **HEAD,
    )
    assert student.config.vocab_size == 50 and student.config.id2label == ("0", "1")


def test_student_equal_to_teacher_has_zero_intermediate_loss(teacher):
    student = build_student(
        StudentConfig(init="teacher_layers", teacher_layers=(1, 2)), teacher, **HEAD
    )
    student.eval()
    identity = HiddenProjection(32, 32, 3, shared=True)  # a learned map, set to the identity
    torch.nn.init.eye_(identity.layers[0].weight)
    loss, parts = IntermediateLoss(student, teacher, identity, [1, 2], DistillConfig())(
        Batch.from_rows(batch())
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    assert set(parts) == {"att_loss", "hid_loss", "emb_loss"}
    # A mismatched map (student layer 1 <- teacher layer 2) is not zero.
    loss, _ = IntermediateLoss(student, teacher, identity, [2, 2], DistillConfig())(
        Batch.from_rows(batch())
    )
    assert loss.item() > 1e-5


def test_intermediate_loss_trains_student_and_projection_not_teacher(teacher):
    student = build_student(
        StudentConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=4, intermediate_size=20
        ),
        teacher,
        **HEAD,
    )
    projection = HiddenProjection(16, 32, 2, shared=False)
    loss, _ = IntermediateLoss(student, teacher, projection, [2], DistillConfig())(
        Batch.from_rows(batch())
    )
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in projection.parameters())


def test_cached_teacher_logits_follow_dataset_order(teacher):
    b = batch(n=5)
    lengths = b["attention_mask"].sum(1).tolist()
    collate = lambda idx: {k: v[idx] for k, v in b.items()}  # noqa: E731
    cached = teacher_logits(teacher, TrainData(lengths, collate), 2, torch.device("cpu"))
    with torch.no_grad():
        direct = teacher(b["input_ids"], b["attention_mask"], b["token_type_ids"]).logits
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=0)


def test_prediction_loss_looks_up_cached_logits_by_index(teacher):
    b = batch()
    with torch.no_grad():
        logits = teacher(b["input_ids"], b["attention_mask"], b["token_type_ids"]).logits
    shuffled = {**b, "index": torch.tensor([2, 0, 1])}
    reordered = {k: v[[2, 0, 1]] if k != "index" else shuffled["index"] for k, v in b.items()}
    loss_fn = PredictionLoss(teacher, logits, DistillConfig(), regression=False)
    p = torch.softmax(logits, -1)
    entropy = -(p * p.log()).sum(-1).mean()  # soft CE of a model against itself
    assert loss_fn(Batch.from_rows(reordered))[0].item() == pytest.approx(entropy.item(), abs=1e-6)


class _Fixed(torch.nn.Module):
    """A 'student' whose logits are given: the loss arithmetic alone is under test."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.out = logits

    def forward(self, **_):
        return type("O", (), {"logits": self.out})


def test_hard_label_term_adds_weighted_cross_entropy_on_gold_labels():
    s = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    b = {**batch(), "labels": torch.tensor([0, 1, 1])}
    soft = -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean()
    # hand-computed: CE of rows 0, 1, 2 against labels 0, 1, 1
    hard = (
        torch.log1p(torch.exp(torch.tensor(-2.0)))
        + torch.log1p(torch.exp(torch.tensor(-1.0)))
        + torch.log(torch.tensor(2.0))
    ) / 3
    for w in (0.0, 0.5):
        loss, _ = PredictionLoss(_Fixed(s), t, DistillConfig(hard_label_weight=w), False)(
            Batch.from_rows(b)
        )
        torch.testing.assert_close(loss, soft + w * hard)


def test_hard_label_term_for_regression_is_mse_to_the_gold_score():
    s, t = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.0]])
    b = {**batch(2), "labels": torch.tensor([1.5, 4.0])}
    loss, _ = PredictionLoss(_Fixed(s), t, DistillConfig(hard_label_weight=2.0), True)(
        Batch.from_rows(b)
    )
    # teacher MSE (1 + 1) / 2 = 1; gold MSE (0.25 + 1) / 2 = 0.625
    torch.testing.assert_close(loss, torch.tensor(1.0 + 2.0 * 0.625))


def test_token_logits_are_one_contiguous_tensor():
    """Token tasks' cached logits: one (total_tokens, C) tensor, row i a view of its tokens."""
    from tinybert.train.inference import TokenLogits, logits_over

    lengths = [3, 1, 2]
    table = torch.arange(6 * 4, dtype=torch.float32).view(6, 4)  # (B=3, T=2, C=4) below

    def fn(inputs):  # (B, T, C): row r's token t gets table[r * 2 + t]
        b, t = inputs["input_ids"].shape
        return torch.stack([table[(3 * i) % 6 : (3 * i) % 6 + t] for i in range(b)])

    collate = lambda idx: {  # noqa: E731
        k: torch.zeros(len(idx), max(lengths[i] for i in idx), dtype=torch.long)
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }
    out = logits_over(fn, lengths, collate, batch_size=2)
    assert isinstance(out, TokenLogits) and len(out) == 3
    assert out.values.shape == (6, 4) and out.values.is_contiguous()
    assert [tuple(out[i].shape) for i in range(3)] == [(3, 4), (1, 4), (2, 4)]
    assert out[1].data_ptr() == out.values[3].data_ptr()  # a view, not a copy
