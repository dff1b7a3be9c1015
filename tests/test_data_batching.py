"""collate pads per batch; batch_order is deterministic, complete, and groups lengths."""

import random
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tinybert.data import (
    batch_order,
    collate,
    encode_examples,
    get_task,
    load_tokenizer,
    read_examples,
    tokenizer_info,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ALL_FLAGS = [(s, g) for s in (False, True) for g in (False, True)]


def item(n: int, label, index: int, second: int = 0) -> dict:
    """A dataset item of n tokens, the last `second` of them in segment B."""
    return {
        "input_ids": list(range(10, 10 + n)),
        "token_type_ids": [0] * (n - second) + [1] * second,
        "label": label,
        "index": index,
    }


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


# --------------------------------------------------------------------------- collate


def test_collate_pads_to_longest_in_batch():
    batch = collate([item(3, 1, 7), item(5, 0, 2, second=2)], pad_id=99)
    assert batch["input_ids"].shape == (2, 5) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0].tolist() == [10, 11, 12, 99, 99]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert batch["index"].tolist() == [7, 2] and batch["index"].dtype == torch.long
    assert all(t.dtype == torch.long for k, t in batch.items() if k != "labels")


def test_collate_regression_labels_are_float():
    batch = collate([item(2, 0.5, 0), item(4, 4.25, 1)])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [0.5, 4.25]
    assert batch["input_ids"][0, 2:].tolist() == [0, 0]  # default pad id 0


# --------------------------------------------------------------------------- batch_order


@pytest.mark.parametrize("shuffle,group", ALL_FLAGS)
def test_every_index_exactly_once_and_last_batch_kept(shuffle, group):
    lengths = [random.Random(1).randint(3, 60) for _ in range(103)]
    batches = batch_order(lengths, 10, shuffle, seed=3, epoch=1, group_by_length=group)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))
    assert sorted(len(b) for b in batches) == [3] + [10] * 10


def test_deterministic_per_seed_and_epoch():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=500))
    order = partial(batch_order, lengths, 16, True, group_by_length=True)
    assert order(seed=1, epoch=0) == order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) != order(seed=1, epoch=1)
    assert order(seed=1, epoch=0) != order(seed=2, epoch=0)
    plain = partial(batch_order, lengths, 16, True, group_by_length=False)
    assert plain(seed=1, epoch=3) == plain(seed=1, epoch=3) != plain(seed=1, epoch=4)


def test_global_rng_is_untouched():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    batch_order(list(range(1, 300)), 8, True, seed=5, epoch=2, group_by_length=True)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]


def test_without_shuffle():
    lengths = [4, 9, 2, 9, 7]
    assert batch_order(lengths, 2, False, 0, 0, group_by_length=False) == [[0, 1], [2, 3], [4]]
    # evaluation with grouping: longest first, ties in dataset order
    assert batch_order(lengths, 2, False, 0, 0, group_by_length=True) == [[1, 3], [4, 0], [2]]


def test_group_by_length_cuts_padding_but_keeps_batches_random():
    lengths = np.random.default_rng(0).integers(5, 129, size=4000).tolist()
    plain = batch_order(lengths, 32, True, seed=0, epoch=0, group_by_length=False)
    grouped = batch_order(lengths, 32, True, seed=0, epoch=0, group_by_length=True)
    assert padded_tokens(grouped, lengths) < 0.6 * padded_tokens(plain, lengths)
    assert padded_tokens(grouped, lengths) >= sum(lengths)
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        batch_order([3, 4], 0, True, 0, 0, True)
    assert batch_order([], 4, True, 0, 0, True) == []


# --------------------------------------------------------------------------- end to end


def test_dataloader_over_encoded_fixture():
    task = get_task("qnli")
    examples, _ = read_examples(task, FIXTURES / "glue" / "QNLI" / "train.tsv")
    tok = load_tokenizer(FIXTURES / "data" / "tiny_vocab")
    data = encode_examples(tok, examples, task, max_seq_length=64)
    batches = batch_order(data.lengths, 2, True, seed=0, epoch=0, group_by_length=True)
    loader = DataLoader(
        data, batch_sampler=batches, collate_fn=partial(collate, pad_id=tokenizer_info(tok)[1])
    )
    seen = []
    for batch in loader:
        width = max(data.lengths[i] for i in batch["index"].tolist())
        assert batch["input_ids"].shape[1] == width < 64  # padded per batch, not to max length
        assert batch["attention_mask"].sum().item() == sum(data.lengths[i] for i in batch["index"])
        seen += batch["index"].tolist()
    assert sorted(seen) == [0, 1, 2]
