"""Shared fixtures: a tiny BERT directory and a tiny SST-2 folder in the official layouts.

Tests write only below their tmp dirs: every test gets its own TINYBERT_CACHE (the
`precision: auto` probe), and the session fails if the run left new files in tests/ or the
repository root (see `_no_stray_files`).
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "bright"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "weak", "grim"]
FILLER = ["the", "movie", "film", "was", "very", "plot", "and", "a", "story", "acting", "is"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the real inputs at {path} (../shared beside the repo)")
    return path


def write_vocab(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    words = (
        SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz.,!")
    )
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return directory


def sst2_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Sentences whose label is decided by one sentiment word, with filler of varied length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        filler = rng.sample(FILLER, rng.randint(1, 8))
        filler.insert(rng.randint(0, len(filler)), word)
        rows.append((" ".join(filler), label))
    return rows


def write_sst2(directory: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.tsv", n_train, 0), ("dev.tsv", n_dev, 1)):
        lines = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in sst2_rows(n, seed)]
        (directory / name).write_text("\n".join(lines) + "\n")
    return directory


def check_mlm_augment(directory: Path, model, tok, tmp_path: Path, capsys) -> tuple[dict, Path]:
    """The masked LM saved in `directory` (loaded as tinybert's `model`, tokenizer `tok`): its
    augmentation top-k at two [MASK]s equals transformers' logits' top-k (the excluded ids left
    out), and `tinybert augment` with it on a tiny SST-2 succeeds and replaces words by the MLM.
    Returns the augment summary and the run folder."""
    import transformers

    from tinybert.cli import main
    from tinybert.data.word_replacement import candidate_exclusions
    from tinybert.recipes.augment import mlm_topk

    excluded = candidate_exclusions(tok)
    mask = tok.specials.mask_id
    topk = mlm_topk(model, torch.device("cpu"), "fp32", mask, tok.specials.pad_id, excluded)
    rows = [tok.encode("the movie was good").ids, tok.encode("a bad film").ids]
    rows[0][2], rows[1][1] = mask, mask
    hf = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    for row, ids in zip(rows, topk(rows, 5), strict=True):
        with torch.no_grad():
            logits = hf(torch.tensor([row])).logits[0, row.index(mask)]
        logits[excluded] = float("-inf")
        assert ids.tolist() == torch.topk(logits, 5).indices.tolist()

    data = write_sst2(tmp_path / "SST-2", n_train=6, n_dev=2)
    run_dir = tmp_path / "run"
    code = main(
        ["augment", f"task.data_dir={data}", f"output_dir={run_dir}", f"augment.mlm={directory}",
         "augment.n=2", "augment.p=1", "device=cpu", "augment.precision=fp32"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((run_dir / "augmented" / "train.tsv.summary.json").read_text())
    assert report["mlm"] is True and report["words"]["replaced_mlm"] > 0
    return report, run_dir


def majority_rate(tsv: Path) -> float:
    """The accuracy of always answering a file's most common label (its last, `label`, column):
    the bar a trained model has to clear."""
    labels = [line.rsplit("\t", 1)[1] for line in tsv.read_text().splitlines()[1:] if line]
    return max(collections.Counter(labels).values()) / len(labels)


@pytest.fixture
def sst2_dir(tmp_path: Path) -> Path:
    return write_sst2(tmp_path / "SST-2")


def write_tiny_bert(directory: Path, num_labels: int | None = None) -> Path:
    """A randomly initialised 2-layer, hidden-32 BERT saved as a Hugging Face directory: an
    encoder, or with `num_labels` a sequence classifier (a teacher whose head counts as trained:
    random weights, but its outputs are all a distillation test needs)."""
    from tinybert.model import BertConfig, BertForSequenceClassification, BertModel, save_model

    write_vocab(directory)
    n_vocab = len((directory / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    if num_labels is None:
        model = BertModel(BertConfig(vocab_size=n_vocab, **TINY))
    else:
        model = BertForSequenceClassification(
            BertConfig(vocab_size=n_vocab, num_labels=num_labels, **TINY)
        )
    save_model(model, directory, tokenizer_dir=directory)
    return directory


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> Path:
    return write_tiny_bert(tmp_path / "tiny-bert")


def corpus_text(n_docs: int, seed: int, wiki: bool = False) -> str:
    """Documents of 1-6 paragraphs of 3-40 vocabulary words, a blank line between documents
    (WikiExtractor's layout; with `wiki`, wrapped in <doc> tags as its raw output is)."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + FILLER
    docs = []
    for d in range(n_docs):
        paragraphs = [
            " ".join(rng.choice(words) for _ in range(rng.randint(3, 40))) + "."
            for _ in range(rng.randint(1, 6))
        ]
        if wiki:
            paragraphs = [f'<doc id="{d}" url="x" title="t{d}">', *paragraphs, "</doc>"]
        docs.append("\n".join(paragraphs))
    return "\n\n".join(docs) + "\n"


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "text" / "corpus.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(corpus_text(40, seed=0))
    return path


# --------------------------------------------------------------------------- kill at a known step

# A child for the kill tests: the CLI, which pauses right after it has written the checkpoint
# folder given as argv[1], once it has said so on stderr. The test reads that line, then
# signals: the signal lands at a known step however fast or busy the machine is (no timing
# guess). SIGKILL ends the child where it stands. SIGTERM/SIGINT are caught by a handler put in
# before the line is printed (so none is missed), and the child waits until that handler has
# run (Python runs handlers in the main thread, between bytecodes: hence a short poll rather
# than signal.pause(), which sleeps on if the OS hands the signal to another thread); it then
# passes the signal to the training loop's own handler, which stops at the next step boundary.
PAUSE_AFTER_CHECKPOINT = """
import os, signal, sys, time
from tinybert.train import checkpoint
wanted = os.path.abspath(sys.argv.pop(1))
write_atomic = checkpoint.write_atomic
def write_then_pause(target, write):
    write_atomic(target, write)
    if os.path.abspath(target) != wanted:
        return
    got = []
    stops = (signal.SIGTERM, signal.SIGINT)
    loop_handlers = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in stops}
    print("paused after writing", target, file=sys.stderr, flush=True)
    while not got:
        time.sleep(0.01)
    for s, handler in loop_handlers.items():
        signal.signal(s, handler)
    handler = loop_handlers[got[0]]
    handler(got[0], None) if callable(handler) else signal.raise_signal(got[0])
checkpoint.write_atomic = write_then_pause
from tinybert.cli import main
sys.exit(main(sys.argv[1:]))
"""


def pausing_command(checkpoint: Path, *args: str) -> list[str]:
    """`python -m tinybert *args`, pausing once it has written `checkpoint` (see above)."""
    return [sys.executable, "-c", PAUSE_AFTER_CHECKPOINT, str(checkpoint), *args]


def wait_until_paused(stream: IO[bytes]) -> str:
    """Read a pausing child's output (the pipe its stderr goes to) until it says it paused;
    returns what it read. Fails if the child ends first."""
    seen = []
    for raw in iter(stream.readline, b""):
        seen.append(raw.decode(errors="replace"))
        if seen[-1].startswith("paused after writing "):
            return "".join(seen)
    raise AssertionError("the child ended before it paused:\n" + "".join(seen))


# --------------------------------------------------------------------------- writes stay in tmp

_TEST_NUMBER = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _session_scratch(tmp_path_factory) -> Path:
    """Point the caches that code writes on its own into this session's tmp dir:
    TINYBERT_CACHE (the `precision: auto` probe; each test gets a fresh one, see below),
    XDG_CACHE_HOME (ONNX Runtime writes a device id and a database under
    $XDG_CACHE_HOME/Microsoft at import), and TMPDIR for child processes (torchrun leaves
    torchelastic_* folders in the temp dir; this process's `tempfile` has fixed its own already).
    TINYBERT_AUTO_PRECISION=fp32: `precision: auto` (every stage's default) trains in fp32
    whatever this CPU has, so numbers do not depend on the machine the suite runs on (tests of
    auto itself unset it). Session-wide, so module-scoped fixtures (which are set up before any
    test's) and child processes are covered too."""
    scratch = tmp_path_factory.mktemp("scratch")
    (scratch / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYBERT_CACHE", str(scratch / "tinybert-cache"))
        mp.setenv("XDG_CACHE_HOME", str(scratch / "xdg-cache"))
        mp.setenv("TMPDIR", str(scratch / "tmp"))
        mp.setenv("TINYBERT_AUTO_PRECISION", "fp32")
        yield scratch


@pytest.fixture(autouse=True)
def _fresh_tinybert_cache(_session_scratch: Path, monkeypatch) -> None:
    """A TINYBERT_CACHE of its own for every test (created only if something is cached), so no
    test sees another's probe result and none writes to ~/.cache/tinybert."""
    path = _session_scratch / f"tinybert-cache-{next(_TEST_NUMBER)}"
    monkeypatch.setenv("TINYBERT_CACHE", str(path))


# Left by tools, not by tests.
_NOT_STRAY = {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".import_linter_cache",
    ".venv",
}


def _untracked() -> set[str] | None:
    """The repository's untracked and ignored entries (directories collapsed), or None without
    git."""
    if shutil.which("git") is None:
        return None
    try:
        run = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain=v1",
                "-z",
                "--ignored=matching",
                "--untracked-files=normal",
            ],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if run.returncode != 0:  # not a git checkout (an sdist, a copy)
        return None
    entries = [e for e in run.stdout.decode("utf-8", "replace").split("\0") if e]
    return {e[3:] for e in entries if e[:2] in ("??", "!!")}


def _stray(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    if any(p in _NOT_STRAY or p.endswith(".egg-info") for p in parts):
        return False
    if path.endswith((".py", ".md", ".toml", ".cfg", ".ini")):  # edited while the suite runs
        return False
    # in the root, only what a run writes: `runs/` (the default output_dir), eval JSON, exports
    return parts[0] == "tests" or (len(parts) == 1 and not parts[0].startswith("."))


@pytest.fixture(scope="session", autouse=True)
def _no_stray_files(tmp_path_factory):
    """Fail the session when it left new files in tests/ or the repository root (a command's
    default output folder, eval_results.json beside a fixture model, ...): tests write only
    below their tmp dirs. Skipped where git is not available."""
    before = _untracked()
    yield
    if before is None:
        return
    after = _untracked()
    basetemp = tmp_path_factory.getbasetemp().resolve()  # --basetemp may lie in the repo
    inside = basetemp.relative_to(REPO).as_posix() if basetemp.is_relative_to(REPO) else None

    def is_basetemp(path: str) -> bool:  # the folder itself, inside it, or a folder holding it
        a, b = f"{path.rstrip('/')}/", f"{inside}/"
        return inside is not None and (a.startswith(b) or b.startswith(a))

    new = sorted(p for p in (after or set()) - before if _stray(p) and not is_basetemp(p))
    assert not new, f"the test session left files in the repository: {new}"
