"""TD phase 1's teacher cache: the frozen teacher's mapped outputs, computed once, on disk.

Phase 1 runs for many epochs and its teacher gives the same outputs every epoch (eval mode, no
dropout), yet its forward is most of a step. Before the first step (`IntermediateLoss.prepare`)
one pass of the teacher over the training set writes, for each row, only what the layer map
needs, unpadded and in the dtype the run's precision produces (what the loss would have seen):

    attention scores  (A, H, L, L)  the A mapped teacher layers (absent when attention_weight=0)
    hidden states     (S, L, D)     the embedding output and the mapped layers' outputs

Each process writes its own shard, rows rank, rank + world, ... (as phase 2's teacher logits are
shared out), and reads every shard: a batch's rows come from any of them. Reading a batch pads
each row back to the batch's length as a live teacher masks it: attention scores at
finfo(dtype).min, attention probabilities (`attention_signal` "probabilities") and hidden states at
0. The "real_tokens" losses never look at padded positions anyway (they select real query x real
key pairs and real tokens with `torch.where`), so the loss and its gradient are those of a live
teacher; the "reference" mode counts padded positions, whose teacher outputs depend on the batch,
so it never uses the cache. Keys a teacher masks inside a row (ModernBERT's local-attention
windows) are part of the stored L x L block, so they come back exactly as the teacher gave them.

A pass before training, rather than filling the cache during the first epoch: the pass batches
rows by length (little padding) and runs the teacher alone, so it costs less than epoch 1's
teacher forwards; a killed run leaves either a whole cache or none, with no partly filled epoch to
track; and each process caches a fixed shard instead of whatever rows the sampler hands it.

Safety: the shards are written into `teacher_cache.tmp` (which the stage folder's leftover cleaning
removes), the manifest (`manifest.json`, with the fingerprint of teacher, data, precision, layer map
and world size) is written last, then the folder is renamed to `teacher_cache`. A cache whose
manifest is missing, differs from this run's or whose shards have the wrong sizes is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.train.checkpoint import remove
from tinybert.train.distributed import Dist
from tinybert.train.loop import Collated, TrainData
from tinybert.train.precision import autocast

ATTENTION_SIGNALS = ("scores", "probabilities")
CACHE_DIR = "teacher_cache"  # in the stage folder; removed when phase 1 finishes
MANIFEST = "manifest.json"
FORMAT = 1
GB = 1e9
# Keep this much disk free beyond the cache itself (checkpoints still have to fit).
DISK_MARGIN = 1 * GB


@dataclass(frozen=True)
class CachePlan:
    """Everything the cache needs from the recipe: where, how big it may be, what it is of.

    fingerprint: identifies teacher, data, precision and layer map (the recipe builds it);
    budget_gb: intermediate.teacher_cache_gb; batch_size: rows per teacher forward of the pass.
    """

    folder: Path
    budget_gb: float
    fingerprint: dict[str, Any]
    data: TrainData
    batch_size: int
    device: torch.device
    precision: str
    dist: Dist


@dataclass(frozen=True)
class Layout:
    """Which teacher outputs are cached (0-based indices into its attention_scores and
    hidden_states), their shapes' fixed parts and their dtypes; `signal`: what the attention
    outputs are (`attention_signal`), which decides what padded keys read back as."""

    att_layers: tuple[int, ...]
    hid_layers: tuple[int, ...]
    heads: int
    width: int
    att_dtype: torch.dtype
    hid_dtype: torch.dtype
    signal: str = "scores"

    def row_bytes(self, length: int) -> tuple[int, int]:
        att = len(self.att_layers) * self.heads * length * length * self.att_dtype.itemsize
        hid = len(self.hid_layers) * length * self.width * self.hid_dtype.itemsize
        return att, hid

    def describe(self) -> dict[str, Any]:
        return {
            "att_layers": list(self.att_layers),
            "hid_layers": list(self.hid_layers),
            "heads": self.heads,
            "width": self.width,
            "att_dtype": str(self.att_dtype),
            "hid_dtype": str(self.hid_dtype),
            "signal": self.signal,
        }

    def att_padding(self) -> float:
        """What a padded attention entry holds: a live teacher's masked score or probability."""
        return torch.finfo(self.att_dtype).min if self.signal == "scores" else 0.0


class TeacherOutputs:
    """A batch's cached teacher outputs, indexed as the encoder's output is: attention_scores[j]
    and hidden_states[j] hold the cached layers (None for those not cached)."""

    def __init__(self, layout: Layout, att: list[torch.Tensor], hid: list[torch.Tensor]):
        self.attention_scores: list[torch.Tensor | None] = [None] * (
            max(layout.att_layers, default=-1) + 1
        )
        self.hidden_states: list[torch.Tensor | None] = [None] * (max(layout.hid_layers) + 1)
        for j, t in zip(layout.att_layers, att, strict=True):
            self.attention_scores[j] = t
        for j, t in zip(layout.hid_layers, hid, strict=True):
            self.hidden_states[j] = t


def _shard_rows(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sizes, dtype=np.int64), out=out[1:])
    return out


class TeacherCache:
    """Reads a complete cache: `outputs(indices, length, device)` -> a batch's TeacherOutputs."""

    def __init__(self, folder: Path, layout: Layout, lengths: np.ndarray, world: int):
        self.layout, self.lengths, self.world = layout, lengths, world
        self.att: list[np.ndarray | None] = []
        self.hid: list[np.ndarray] = []
        self.att_off: list[np.ndarray] = []
        self.hid_off: list[np.ndarray] = []
        for rank in range(world):
            att_sizes, hid_sizes = _shard_sizes(layout, lengths, rank, world)
            self.att_off.append(_offsets(att_sizes))
            self.hid_off.append(_offsets(hid_sizes))
            self.att.append(_open(folder / f"att-{rank}.bin", int(self.att_off[-1][-1])))
            hid = _open(folder / f"hid-{rank}.bin", int(self.hid_off[-1][-1]))
            assert hid is not None  # the embedding output is always cached
            self.hid.append(hid)

    def outputs(self, indices: Sequence[int], length: int, device: torch.device) -> TeacherOutputs:
        """The cached outputs of rows `indices`, padded to `length` tokens (attention: masked,
        see `Layout.att_padding`; hidden states: zeros)."""
        lay, b = self.layout, len(indices)
        att_shape = (len(lay.att_layers), b, lay.heads, length, length)
        att = torch.full(att_shape, lay.att_padding(), dtype=lay.att_dtype)
        hid = torch.zeros(len(lay.hid_layers), b, length, lay.width, dtype=lay.hid_dtype)
        for row, i in enumerate(indices):
            n, rank, pos = int(self.lengths[i]), i % self.world, i // self.world
            if lay.att_layers:
                block = self._read(self.att[rank], self.att_off[rank], pos, lay.att_dtype)
                att[:, row, :, :n, :n] = block.view(len(lay.att_layers), lay.heads, n, n)
            block = self._read(self.hid[rank], self.hid_off[rank], pos, lay.hid_dtype)
            hid[:, row, :n] = block.view(len(lay.hid_layers), n, lay.width)
        att, hid = att.to(device), hid.to(device)
        return TeacherOutputs(lay, list(att.unbind(0)), list(hid.unbind(0)))

    @staticmethod
    def _read(
        data: np.ndarray | None, offsets: np.ndarray, pos: int, dtype: torch.dtype
    ) -> torch.Tensor:
        assert data is not None
        raw = np.array(data[offsets[pos] : offsets[pos + 1]])  # a copy: torch wants writable memory
        return torch.from_numpy(raw).view(dtype)


def _open(path: Path, size: int) -> np.ndarray | None:
    """A shard file as a read-only byte array (None when it is empty: numpy maps no 0 bytes)."""
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size,)) if size else None


def _shard_sizes(
    layout: Layout, lengths: np.ndarray, rank: int, world: int
) -> tuple[list[int], list[int]]:
    sizes = [layout.row_bytes(int(lengths[i])) for i in _shard_rows(len(lengths), rank, world)]
    return [a for a, _ in sizes], [h for _, h in sizes]


def cache_size(layout: Layout, lengths: np.ndarray) -> int:
    """Bytes of the whole cache (every shard)."""
    return sum(sum(layout.row_bytes(int(n))) for n in lengths)


def _encoder(model: nn.Module) -> nn.Module:
    return getattr(model, "bert", model)


def attention_signal(teacher: nn.Module) -> str:
    """What the teacher's `attention_scores` hold: "scores" (pre-softmax, masked keys at
    finfo.min: our BERT, which has no `attention_signal` attribute, and most families) or
    "probabilities" (softmax, masked keys 0: DeBERTa-v2). Read from the model or its encoder."""
    default = getattr(_encoder(teacher), "attention_signal", "scores")
    signal = getattr(teacher, "attention_signal", default)
    if signal not in ATTENTION_SIGNALS:
        raise ValueError(
            f"teacher attention_signal {signal!r}; expected one of {ATTENTION_SIGNALS}"
        )
    return str(signal)


def teacher_forward(teacher: nn.Module, batch: Collated, want_att: bool | Collection[int]) -> Any:
    """The teacher's encoder outputs for a batch (its input_ids, attention_mask and
    token_type_ids), as phase 1 computes them (no gradients).
    want_att: every layer's attention scores (True), none, or those of these 0-based layers
    (the others then run the fused attention kernel)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        return _encoder(teacher)(
            **inputs, output_hidden_states=True, output_attention_scores=want_att
        )


def mapped_scores(layer_map: Sequence[int], want_att: bool) -> list[int] | bool:
    """Which teacher layers' attention scores phase 1 asks for: the mapped ones (0-based), or
    none. The live loss and the cache pass ask alike, so both run the same kernels."""
    return [j - 1 for j in layer_map] if want_att else False


def probe_layout(
    teacher: nn.Module, plan: CachePlan, layer_map: list[int], want_att: bool
) -> Layout:
    """The cache layout, with the dtypes the teacher produces under this run's precision (one
    row through the teacher tells: LayerNorm outputs stay fp32 under bf16 autocast, scores not)."""
    shortest = int(np.argmin(plan.data.lengths))
    batch = {k: v.to(plan.device) for k, v in plan.data.collate([shortest]).items()}
    with autocast(plan.device, plan.precision):
        out = teacher_forward(teacher, batch, mapped_scores(layer_map, want_att))
    att_layers = tuple(j - 1 for j in layer_map) if want_att else ()
    hid_layers = (0, *layer_map)
    scores = out.attention_scores[att_layers[0]] if att_layers else None
    hidden = out.hidden_states[0]
    return Layout(
        att_layers,
        hid_layers,
        heads=0 if scores is None else scores.shape[1],
        width=hidden.shape[-1],
        att_dtype=torch.float32 if scores is None else scores.dtype,
        hid_dtype=hidden.dtype,
        signal=attention_signal(teacher),
    )


def _manifest(plan: CachePlan, layout: Layout) -> dict[str, Any]:
    return {
        "format": FORMAT,
        **plan.fingerprint,
        "world": plan.dist.world,
        "device": plan.device.type,
        "precision": plan.precision,
        "layout": layout.describe(),
    }


def _complete(folder: Path, manifest: dict[str, Any], layout: Layout, lengths: np.ndarray) -> bool:
    """Whether `folder` holds a whole cache made for exactly this run."""
    try:
        saved = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if saved != json.loads(json.dumps(manifest)):
        return False
    for rank in range(manifest["world"]):
        att, hid = _shard_sizes(layout, lengths, rank, manifest["world"])
        for name, size in ((f"att-{rank}.bin", sum(att)), (f"hid-{rank}.bin", sum(hid))):
            path = folder / name
            if not path.is_file() or path.stat().st_size != size:
                return False
    return True


def _write_shard(teacher: nn.Module, plan: CachePlan, layout: Layout, folder: Path) -> None:
    """This process's rows through the teacher, written to att-<rank>.bin and hid-<rank>.bin."""
    dist, lengths = plan.dist, np.asarray(plan.data.lengths)
    mine = _shard_rows(len(lengths), dist.rank, dist.world)
    att_sizes, hid_sizes = _shard_sizes(layout, lengths, dist.rank, dist.world)
    att_off, hid_off = _offsets(att_sizes), _offsets(hid_sizes)
    files = []
    for name, size in (
        (f"att-{dist.rank}.bin", att_off[-1]),
        (f"hid-{dist.rank}.bin", hid_off[-1]),
    ):
        with open(folder / name, "wb") as f:
            f.truncate(int(size))
        files.append(np.memmap(folder / name, dtype=np.uint8, mode="r+") if size else None)
    att_mm, hid_mm = files
    order = sorted(range(len(mine)), key=lambda p: lengths[mine[p]])  # shortest first
    was_training = teacher.training
    teacher.eval()
    try:
        for start in range(0, len(order), plan.batch_size):
            positions = order[start : start + plan.batch_size]
            batch = plan.data.collate([mine[p] for p in positions])
            batch = {k: v.to(plan.device) for k, v in batch.items()}
            with autocast(plan.device, plan.precision):
                out = teacher_forward(teacher, batch, layout.att_layers or False)
            for row, p in enumerate(positions):
                n = int(lengths[mine[p]])
                if att_mm is not None:
                    att = torch.stack(
                        [out.attention_scores[j][row, :, :n, :n] for j in layout.att_layers]
                    )
                    _put(att_mm, att_off, p, att)
                hid = torch.stack([out.hidden_states[j][row, :n] for j in layout.hid_layers])
                _put(hid_mm, hid_off, p, hid)
    finally:
        teacher.train(was_training)
    if dist.enabled:
        tqdm.write(f"teacher cache: process {dist.rank} wrote {len(mine)} of {len(lengths)} rows")
    for mm in files:
        if mm is not None:
            mm.flush()
            del mm


def _put(mm: np.ndarray | None, offsets: np.ndarray, pos: int, values: torch.Tensor) -> None:
    assert mm is not None
    raw = values.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy()
    mm[offsets[pos] : offsets[pos + 1]] = raw


def open_or_build(
    teacher: nn.Module, plan: CachePlan, layer_map: list[int], want_att: bool
) -> TeacherCache | None:
    """The cache for this run: reused when whole and made for it, else built now; None (with a
    message saying why, the run then computes the teacher every step) when it does not fit
    the budget or the disk. Every process calls this at once."""
    dist, lengths = plan.dist, np.asarray(plan.data.lengths)
    layout = probe_layout(teacher, plan, layer_map, want_att)
    size = cache_size(layout, lengths)
    # The main process decides for all: free disk space may read differently on each.
    refusal = dist.gather(_refusal(plan, size) if dist.is_main else None)[0]
    if refusal:
        if dist.is_main:
            tqdm.write(refusal)
        return None
    manifest = _manifest(plan, layout)
    final = plan.folder / CACHE_DIR
    reuse = dist.gather(_complete(final, manifest, layout, lengths) if dist.is_main else None)[0]
    if reuse:
        if dist.is_main:
            tqdm.write(f"phase 1: reading the teacher's outputs from the cache in {final}")
        return TeacherCache(final, layout, lengths, dist.world)
    _build(teacher, plan, layout, manifest, size)
    return TeacherCache(final, layout, lengths, dist.world)


def _refusal(plan: CachePlan, size: int) -> str | None:
    """Why the cache is not used (a one-line message), or None when it fits."""
    need = f"{size / GB:.2f} GB"
    if size > plan.budget_gb * GB:
        return (
            f"phase 1: the teacher cache would take {need}, over intermediate.teacher_cache_gb="
            f"{plan.budget_gb:g}; computing the teacher at every step instead (slower; raise "
            f"intermediate.teacher_cache_gb to at least {size / GB:.2f} to cache it)"
        )
    plan.folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(plan.folder).free
    old = _folder_bytes(plan.folder / CACHE_DIR)  # a stale cache is deleted before writing
    if size + DISK_MARGIN > free + old:
        return (
            f"phase 1: the teacher cache would take {need} but {plan.folder} has "
            f"{(free + old) / GB:.2f} GB free (keeping {DISK_MARGIN / GB:g} GB spare); "
            "computing the teacher at every step instead (free disk space, or set "
            "intermediate.teacher_cache_gb=0 to silence this)"
        )
    return None


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _build(
    teacher: nn.Module,
    plan: CachePlan,
    layout: Layout,
    manifest: dict[str, Any],
    size: int,
) -> None:
    """Write the cache: shards into teacher_cache.tmp, the manifest last, then the rename."""
    dist = plan.dist
    final = plan.folder / CACHE_DIR
    tmp = final.with_name(final.name + ".tmp")
    if dist.is_main:
        remove(final)  # stale or foreign: never read, never mixed with the new shards
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tqdm.write(
            f"phase 1: caching the teacher's outputs ({size / GB:.2f} GB, "
            f"{len(plan.data.lengths):,} rows) in {final}; every step then reads them "
            "(intermediate.teacher_cache_gb=0 turns this off)"
        )
    dist.barrier()
    t0 = time.perf_counter()
    _write_shard(teacher, plan, layout, tmp)
    dist.barrier()
    if dist.is_main:
        _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, final)  # the cache appears whole, or not at all
        tqdm.write(f"phase 1: teacher cache written in {time.perf_counter() - t0:.1f} s")
    dist.barrier()


def _write_synced(path: Path, text: str) -> None:
    """Write `text` and flush it to disk, so the rename after it never publishes an empty file."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def remove_cache(stage_dir: Path) -> None:
    """Delete a stage's teacher cache (phase 1 finished: nothing reads it again)."""
    for name in (CACHE_DIR, CACHE_DIR + ".tmp"):
        if (Path(stage_dir) / name).exists():
            remove(Path(stage_dir) / name)
