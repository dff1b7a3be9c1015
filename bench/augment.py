"""Augmented sentences per second on SST-2 train sentences (`tinybert augment`'s engine).

    (a) vectors:   GloVe neighbours only (../shared/data/glove, 50-d, 100k words)
    (b) mlm:       a BERT-base-shaped masked LM (12 layers, 768 hidden, random weights, the
                   bert-base-uncased vocabulary) for single-piece words, vectors for the rest;
                   every masked sentence of a block batched, sorted by length
    (c) per-word:  the same MLM driven as the reference script does: one forward pass per word,
                   one sentence at a time, the MLM head over every position (the rest of the
                   engine unchanged)

    python bench/augment.py                     # n 20, p 0.4, k 15; 2,000 / 300 / 40 sentences
    python bench/augment.py --mlm-sentences 100 --per-word-sentences 20

A rate is output rows (originals and copies) per second of augmentation; model loading and
reading the vectors file are not counted (they are printed apart).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def sentences(n: int, seed: int = 0) -> list[str]:
    lines = (SHARED / "data/glue/SST-2/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in random.Random(seed).sample(lines, n)]


def rate(augmenter, texts: list[str]) -> tuple[float, int, float]:
    """(rows out per second, rows out, seconds) of augmenting `texts`."""
    from tinybert.data.base import Example

    examples = [Example(t, None, "1", f"bench:{i}") for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    rows = sum(1 for _ in augmenter.run(examples))
    seconds = time.perf_counter() - t0
    return rows / seconds, rows, seconds


def masked_lm(folder: Path, batch_size: int, precision: str, reference: bool = False):
    """A random BERT-base-shaped BertForMaskedLM saved in `folder`, as augment loads one.
    reference: one row per forward, full (T, vocab) scores, as the reference script runs it."""
    from tinybert.data.tokenization import load_tokenizer, tokenizer_info
    from tinybert.data.word_replacement import MaskedLM, candidate_exclusions
    from tinybert.model import BertConfig, BertForMaskedLM, load_model, save_model
    from tinybert.recipes.augment import mlm_topk
    from tinybert.train.precision import autocast

    (folder / "vocab.txt").write_text(
        (SHARED / "data/vocab/bert-base-uncased-vocab.txt").read_text(encoding="utf-8")
    )
    config = BertConfig(vocab_size=30522, num_hidden_layers=12, hidden_size=768,
                        num_attention_heads=12, intermediate_size=3072)  # fmt: skip
    torch.manual_seed(0)
    save_model(BertForMaskedLM(config), folder)
    model, _ = load_model(folder, head="mlm")
    tok = load_tokenizer(folder)
    _, pad_id = tokenizer_info(tok)
    device = torch.device("cpu")
    mask_id, banned = tok.token_to_id("[MASK]"), candidate_exclusions(tok)
    topk = mlm_topk(model, device, precision, mask_id, pad_id, banned)
    if reference:

        def topk(rows: list[list[int]], k: int):  # noqa: F811 - the reference's way
            out = []
            for row in rows:
                ids = torch.tensor([row])
                with torch.inference_mode(), autocast(device, precision):
                    scores = model(ids).logits[0, row.index(mask_id)].float()  # all positions
                    scores[banned] = float("-inf")
                    out.append(torch.topk(scores, k).indices.numpy())
            return np.stack(out)

    return MaskedLM(tok, topk, max_len=64, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vector-sentences", type=int, default=2000)
    parser.add_argument("--mlm-sentences", type=int, default=300)
    parser.add_argument("--per-word-sentences", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128, help="MLM rows per forward")
    parser.add_argument("--precision", default="auto", help="MLM precision: auto, fp32, bf16")
    args = parser.parse_args()

    from tinybert.data.word_replacement import Augmenter, AugmentOptions
    from tinybert.data.word_vectors import load_word_vectors
    from tinybert.train.precision import resolve_precision

    precision = resolve_precision(args.precision, torch.device("cpu"))
    t0 = time.perf_counter()
    vectors = load_word_vectors(SHARED / "data/glove/glove.6B.50d.100k.txt.gz")
    load_s = time.perf_counter() - t0
    options = AugmentOptions(n=20, p=0.4, k=15, seed=0)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "mlm_precision": precision,
        "vectors_load_s": round(load_s, 2),
    }
    r, rows, s = rate(Augmenter(options, vectors, None), sentences(args.vector_sentences))
    results["vectors"] = {"sentences_per_s": round(r, 1), "rows": rows, "seconds": round(s, 2)}
    print(f"(a) vectors only: {r:.0f} augmented sentences/s ({rows} rows in {s:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, n, batch in (
            ("mlm", args.mlm_sentences, args.batch_size),
            ("per_word", args.per_word_sentences, 1),
        ):
            mlm = masked_lm(Path(tmp), batch, precision, reference=name == "per_word")
            fresh = load_word_vectors(SHARED / "data/glove/glove.6B.50d.100k.txt.gz")  # no cache
            r, rows, s = rate(Augmenter(options, fresh, mlm), sentences(n, seed=1))
            results[name] = {"sentences_per_s": round(r, 2), "rows": rows, "seconds": round(s, 2)}
            print(f"({'b' if name == 'mlm' else 'c'}) {name}: {r:.1f} augmented sentences/s "
                  f"({rows} rows in {s:.1f} s)")  # fmt: skip
    results["mlm_speedup_over_per_word"] = round(
        results["mlm"]["sentences_per_s"] / results["per_word"]["sentences_per_s"], 1
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
