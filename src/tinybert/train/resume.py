"""Resuming a stage: which checkpoint, and whether it belongs to this run.

Every checkpoint records a fingerprint of the settings that define its run (`Trainer.fingerprint`:
the stage's TrainConfig except RESUMABLE, the precision used, the recipe's settings and a hash of
the whole training set, `data_fingerprint`). A resume with other values is refused, naming each
key with both values, so a resumed run never trains on settings or data that config.yaml and the
data files do not show.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinybert.errors import UserError
from tinybert.paths import write_atomic
from tinybert.train import checkpoint as ckpt

# TrainConfig fields that may change when a run resumes: how long it runs (a finished stage
# then goes on from final/, the rest of the learning-rate schedule following the new length),
# and when it evaluates, saves and logs. Every other field must stay as the checkpoint has it.
RESUMABLE = frozenset(
    {"epochs", "max_steps", "eval_steps", "save_steps", "log_steps", "max_checkpoints"}
    | {"eval_batch_size"}
    # phase 1's teacher cache budget: the cache changes only where the teacher's outputs come from
    | {"teacher_cache_gb"}
)


def plain(value: Any) -> Any:
    """Tuples as lists, so a value compares equal after a round trip through torch.save."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# Rows per piece when a training set without a `content` stream is hashed through `collate`.
HASH_ROWS = 4096
DATA_KEY = "training data"  # the fingerprint's key for the data (see check_settings)


def data_fingerprint(
    lengths: np.ndarray,
    collate: Callable[[list[int]], Mapping[str, Any]],
    content: Callable[[], Iterable[Any]] | None = None,
) -> str:
    """`N rows, sha256 H`: H hashes every row's length and the whole training set, so editing a
    sentence or flipping one label changes it. `content()` streams the set as arrays or bytes
    (the recipes give their tokenised arrays: cheap, see BENCHMARKS "Resume: hashing the training
    data"); without it every row is collated, HASH_ROWS at a time, and each tensor hashed."""
    n = len(lengths)
    digest = hashlib.sha256(np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
    pieces = content() if content is not None else _collated(n, collate)
    for piece in pieces:
        _update(digest, piece)
    return f"{n} rows, sha256 {digest.hexdigest()[:16]}"


def _collated(n: int, collate: Callable[[list[int]], Mapping[str, Any]]) -> Iterator[Any]:
    """Every row as the loop sees it: batches of HASH_ROWS rows in order, keys sorted."""
    for start in range(0, n, HASH_ROWS):
        batch = collate(list(range(start, min(n, start + HASH_ROWS))))
        for key in sorted(batch):
            yield key.encode()
            yield batch[key]


def _update(digest: Any, value: Any) -> None:
    """Hash an array or tensor (its dtype and shape, then its bytes, without a copy when it is
    contiguous), bytes as they are, anything else by its repr."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        value = np.ascontiguousarray(value).reshape(-1).view(np.uint8)  # no copy
    elif not isinstance(value, (bytes, memoryview)):
        value = repr(value).encode()
    digest.update(value)


def find_resume(mode: str | None, out_dir: Path) -> tuple[Path | None, dict | None]:
    """The checkpoint to resume from and its state, or (None, None) to start afresh.

    mode: None (start afresh), "auto", or a checkpoint path of this stage. resume=auto takes the
    newest of the step checkpoints and final/ (final/ at equal steps: the stage is finished, or
    is extended to more steps from there)."""
    if mode is None:
        return None, None
    if mode != "auto":
        path = Path(mode)
        if not (path / ckpt.STATE_FILE).is_file():
            raise UserError(f"resume: {path} is not a checkpoint (no {ckpt.STATE_FILE} in it)")
        return path, read_state(path)
    found = ckpt.step_checkpoints(out_dir)
    final = out_dir / "final"
    if (final / ckpt.STATE_FILE).is_file():
        state = read_state(final)
        if not found or ckpt.step_of(found[-1]) <= state["position"]["step"]:
            return final, state
    if not found:
        return None, None
    return found[-1], read_state(found[-1])


def read_state(path: Path) -> dict:
    try:
        return ckpt.load_state(path)
    except UserError:  # not a tinybert state: load_state's own line says so
        raise
    except Exception as exc:  # truncated or unreadable
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise UserError(
            f"resume: cannot read {path / ckpt.STATE_FILE} ({reason}); name another "
            "checkpoint with resume=<path>, or delete this one"
        ) from None


def check_settings(path: Path, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse a checkpoint made with other settings (fingerprints, see module docstring)."""
    changed = [k for k in saved if k in now and saved[k] != now[k]]
    if changed == [DATA_KEY]:  # the settings match, the data does not: say so first
        raise UserError(
            f"resume: the training data changed since the checkpoint {path} was made "
            f"({DATA_KEY}: saved {saved[DATA_KEY]!r}, now {now[DATA_KEY]!r}; every row, label "
            "and token is compared); it cannot change when resuming: put the data back as it "
            "was, or start a new run in another output_dir"
        )
    if changed:
        what = "; ".join(f"{k}: saved {saved[k]!r}, now {now[k]!r}" for k in changed)
        raise UserError(
            f"resume: {path} was made with other settings ({what}); these cannot change "
            "when resuming: set them back, or start a new run in another output_dir"
        )


def check_length(path: Path, step: int, total_steps: int, asked: str) -> None:
    """Refuse a checkpoint past this run's last step (`asked`: e.g. "finetune.max_steps=5")."""
    if step > total_steps:
        raise UserError(
            f"resume: {path} is at step {step}, past this run's {total_steps} steps "
            f"({asked}); ask for at least {step} steps, or start a new run in another output_dir"
        )


def write_config(out_dir: Path, text: str, source: Path | None, step: int | None) -> None:
    """<stage>/config.yaml: the configuration this run trains with (written atomically)."""
    if source is not None:
        text = f"# resumed from {source} at step {step}\n{text}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "config.yaml", text)


def load_weights(path: Path, module: nn.Module, tensors: dict | None, what: str) -> None:
    """Load a checkpoint's tensors into `module`, or one line saying how they differ."""
    try:
        if tensors is None:
            raise RuntimeError("none saved")
        module.load_state_dict(tensors)
    except RuntimeError:
        raise UserError(
            f"resume: {path} does not fit this run's {what} "
            f"({mismatch(module.state_dict(), tensors or {})}); it was made by another "
            "run: name a checkpoint of this one, or use another output_dir"
        ) from None


def mismatch(own: Mapping[str, torch.Tensor], saved: Mapping[str, Any]) -> str:
    """How a checkpoint's tensors differ from a module's: the first shape difference, and how
    many names are missing or extra."""
    parts = []
    shapes = [
        (k, tuple(saved[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if shapes:
        key, theirs, ours = shapes[0]
        more = f" and {len(shapes) - 1} more" if len(shapes) > 1 else ""
        parts.append(f"{key}: checkpoint {list(theirs)}, this run {list(ours)}{more}")
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    if missing:
        parts.append(f"{len(missing)} tensors missing from the checkpoint, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} tensors this run does not have, e.g. {extra[0]}")
    return "; ".join(parts) or "it cannot be loaded"
