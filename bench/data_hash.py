"""What the resume fingerprint's full-content data hash costs (resume.data_fingerprint).

Every checkpoint records a sha256 of the whole training set; a stage computes it once, at its
first checkpoint or when it resumes. Measured on the largest shared inputs:

    corpus   ../shared enwiki-100MB.txt prepared at --seq tokens (prepared here in a temporary
             folder unless --corpus names a prepared one): the shard files streamed (what
             general-distill hashes), and for comparison every row collated (the fallback for a
             TrainData without a content stream); both with the files in the page cache
    sst2     ../shared GLUE SST-2 train.tsv (67,349 rows) tokenised: the in-memory arrays
             (what finetune and task-distill hash), beside the time to read and tokenise it

Best of --repeat runs each. Prints a line per case and a JSON summary.

    python bench/data_hash.py
    python bench/data_hash.py --corpus runs/demo/corpus --repeat 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The shortest wall time of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def corpus_cases(path: Path, tokenizer: str, repeat: int) -> list[dict]:
    from tinybert.data.corpus import open_corpus
    from tinybert.recipes.general_distill import corpus_content
    from tinybert.train.resume import data_fingerprint

    corpus = open_corpus(path, tokenizer)
    n = len(corpus)
    stored = sum(
        (path / s[k]).stat().st_size for s in corpus.meta["shards"] for k in ("ids", "seg")
    )
    rows = []
    for name, content in (
        ("corpus, shard files streamed", lambda: corpus_content(corpus, n)),
        ("corpus, every row collated", None),
    ):
        seconds, value = best_of(
            repeat, lambda c=content: data_fingerprint(corpus.lengths, corpus.collate, c)
        )
        rows.append(
            {
                "case": name,
                "rows": n,
                "stored_mb": stored / 1e6,
                "seconds": seconds,
                "mb_per_s": stored / 1e6 / seconds,
                "fingerprint": value,
            }
        )
    return rows


def sst2_case(data_dir: str, tokenizer: str, repeat: int) -> dict:
    from tinybert.config import TaskConfig
    from tinybert.data.task_data import load_task_data
    from tinybert.train.loop import TrainData
    from tinybert.train.resume import data_fingerprint

    t0 = time.perf_counter()
    data = load_task_data(TaskConfig(name="sst2", data_dir=data_dir), tokenizer, 42, quiet=True)
    load = time.perf_counter() - t0
    train = TrainData.of_task(data)
    lengths = np.asarray(train.lengths)
    seconds, value = best_of(
        repeat, lambda: data_fingerprint(lengths, train.collate, train.content)
    )
    return {
        "case": "sst2 train, tokenised arrays",
        "rows": len(lengths),
        "seconds": seconds,
        "load_and_tokenise_s": load,
        "fingerprint": value,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", default=str(SHARED / "data/corpus/enwiki-100MB.txt"))
    p.add_argument("--corpus", help="a prepared corpus folder (default: prepare --text here)")
    p.add_argument("--tokenizer", default=str(SHARED / "models/all-MiniLM-L6-v2"))
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--sst2", default=str(SHARED / "data/glue/SST-2"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else Path(tmp) / "corpus"
        if not args.corpus:
            from tinybert.data.corpus import PackingOptions, prepare_corpus

            print(f"preparing {args.text} at {args.seq} tokens ...", flush=True)
            options = PackingOptions(max_seq_length=args.seq)
            prepare_corpus([args.text], args.tokenizer, corpus, options, False)
        rows = corpus_cases(corpus, args.tokenizer, args.repeat)
    rows.append(sst2_case(args.sst2, args.tokenizer, args.repeat))
    for row in rows:
        rate = (
            f", {row['mb_per_s']:.0f} MB/s of {row['stored_mb']:.1f} MB"
            if "mb_per_s" in row
            else ""
        )
        load = (
            f" (reading and tokenising it: {row['load_and_tokenise_s']:.2f} s)"
            if "load_and_tokenise_s" in row
            else ""
        )
        print(f"{row['case']}: {row['rows']:,} rows, {row['seconds']:.3f} s{rate}{load}")
    print(json.dumps({"seq": args.seq, "repeat": args.repeat, "rows": rows}))


if __name__ == "__main__":
    main()
