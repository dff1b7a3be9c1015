"""Split the real QNLI dev set (../shared, 5,463 rows) into a small task of our own: 4,000
training rows and 1,463 test rows, in GLUE QNLI's own layout, so `configs/qnli-small.yaml` can
train and score on it (the QNLI train split is not on these machines).

    python scripts/qnli_split.py    # -> runs/qnli-split/train.tsv, runs/qnli-split/dev.tsv

The split is a seeded shuffle (seed 0) of the data rows: the same files every time. The header
line is kept in both files; the rows are copied byte for byte (each ends in a newline).
"""

from __future__ import annotations

import random

from _common import ROOT, SHARED, run_main

SOURCE = SHARED / "data" / "glue" / "QNLI" / "dev.tsv"
OUTPUT = ROOT / "runs" / "qnli-split"
N_TRAIN, SEED = 4000, 0


def main() -> None:
    if not SOURCE.is_file():
        raise SystemExit(f"error: {SOURCE} not found (../shared must sit beside the repository)")
    header, *rows = (line + b"\n" for line in SOURCE.read_bytes().splitlines())
    rows = [r for r in rows if r.strip()]
    random.Random(SEED).shuffle(rows)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.tsv", rows[:N_TRAIN]), ("dev.tsv", rows[N_TRAIN:])):
        (OUTPUT / name).write_bytes(header + b"".join(part))
        print(f"{OUTPUT / name}: {len(part)} rows")


if __name__ == "__main__":
    run_main(__doc__, main)
