"""Corpus preparation throughput (MB/s of text) and peak memory, for two input sizes.

Each size runs in its own process, so its peak resident memory is its own; equal peaks for a
10x larger input show that memory does not grow with the corpus.

    python bench/prepare_corpus.py                     # ../shared enwiki-100MB, and its first 10 MB
    python bench/prepare_corpus.py --input my.txt --tokenizer models/bert --small-mb 5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def run_one(path: str, tokenizer: str, seq: int) -> None:
    """Child: prepare one corpus, print its stats as JSON."""
    import torch

    from tinybert.data.corpus import PackingOptions, prepare_corpus

    with tempfile.TemporaryDirectory() as out:
        stats = prepare_corpus([path], tokenizer, out, PackingOptions(max_seq_length=seq), False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "mb": stats.bytes_read / 1e6,
                "seconds": stats.seconds,
                "mb_per_s": stats.bytes_read / 1e6 / stats.seconds,
                "sequences": stats.sequences,
                "tokens": stats.tokens,
                "peak_rss_mib": peak,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(SHARED / "data/corpus/enwiki-100MB.txt"))
    p.add_argument("--tokenizer", default=str(SHARED / "models/all-MiniLM-L6-v2"))
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--small-mb", type=float, default=10.0, help="size of the smaller run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_one(args.input, args.tokenizer, args.seq)
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.txt"
        with open(args.input, "rb") as f:
            small.write_bytes(f.read(int(args.small_mb * 1e6)))
        rows = []
        for path in (small, Path(args.input)):
            cmd = [sys.executable, __file__, "--child", "--input", str(path)]
            cmd += ["--tokenizer", args.tokenizer, "--seq", str(args.seq)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['mb']:8.1f} MB: {row['mb_per_s']:.2f} MB/s, {row['sequences']} sequences, "
                f"peak memory {row['peak_rss_mib']:.0f} MiB"
            )
    print(json.dumps({"seq": args.seq, "rows": rows}))


if __name__ == "__main__":
    main()
