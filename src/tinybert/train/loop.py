"""The one training loop, shared by fine-tuning, general distillation and both TD phases.

What changes between those jobs is only the loss function handed in (see
`tinybert.distill.objectives`); the loop owns batching, accumulation, mixed precision, clipping,
the schedule, evaluation, the best checkpoint, rotation of step checkpoints, logging, exact
resume, and skipping a stage that already finished.

Exact resume: the batch order of every epoch is a pure function of (seed, epoch), the position is
counted in micro-batches, and the RNG state (dropout) is saved with the weights, optimizer and
scheduler, so a resumed run takes the same steps as one that never stopped.

Data parallel (torchrun): `batch_size` is the global micro-batch; each process takes its rows
of it (see `distributed.py`), the trainable modules are wrapped in DistributedDataParallel, and
each slice's loss is normalised by the global batch's counts (see `objectives.py`), so the
weights after K steps equal a one-process run's with the same batch size.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from tinybert.config import TrainConfig
from tinybert.data.batching import batch_order
from tinybert.errors import UserError
from tinybert.train import checkpoint as ckpt
from tinybert.train.distributed import Dist
from tinybert.train.optim import build_optimizer, linear_schedule
from tinybert.train.precision import autocast, resolve_precision

__all__ = ["Evaluation", "RunContext", "TrainData", "TrainResult", "Trainer"]

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Batch], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class RunContext:
    """What every stage of one command shares: where it writes, on what, and how it resumes.

    A stage writes to `root / stage` (e.g. runs/sst2/student/intermediate). `save_model(model,
    dir)` writes a Hugging Face directory (config, weights, tokenizer).
    """

    root: Path
    device: torch.device
    save_model: Callable[[nn.Module, Path], None]
    dist: Dist = field(default_factory=Dist)
    seed: int = 42
    resume: str | None = None  # None, "auto", or a checkpoint path


@dataclass(frozen=True)
class TrainData:
    """The training set as the loop sees it: row lengths, and `collate(indices)` -> a batch."""

    lengths: Sequence[int]
    collate: Callable[[list[int]], Batch]


@dataclass(frozen=True)
class Evaluation:
    """`run()` -> dev metrics; `metric` is the key whose highest value picks best/."""

    run: Callable[[], dict[str, float]]
    metric: str


@dataclass
class Position:
    """Where training is: optimizer steps done, and micro-batches consumed in the current epoch."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best_metric: float | None = None
    best_step: int | None = None


@dataclass
class TrainResult:
    steps: int
    final_dir: Path
    best_dir: Path | None
    best_metric: float | None
    best_step: int | None
    last_eval: dict[str, float] | None


class MetricsLog:
    """Append-only JSONL file: one object per logging step or evaluation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _constant_predictor(metrics: dict[str, float]) -> bool:
    """Whether a classifier answered the same class for every row of some dev split."""
    return any(k.split("/")[-1] == "predicted_classes" and v == 1 for k, v in metrics.items())


class _Objective(nn.Module):
    """The trainable modules plus the loss, as one module for DistributedDataParallel to wrap.

    DDP must see the forward that produces the loss; here that is `loss_fn(batch)`, which reads
    the same parameters. A process whose slice of a small last batch is empty still takes part
    in the gradient all-reduce, with a zero loss that touches every parameter.
    """

    def __init__(self, modules: list[nn.Module], loss_fn: LossFn):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.loss_fn = loss_fn

    def forward(self, batch: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        if batch is None:
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0, {}
        return self.loss_fn(batch)


class Trainer:
    """Runs one training stage: `data.collate(indices)` builds a batch; `loss_fn(batch)` scores it.

    `model` is what gets saved as a Hugging Face directory (via `ctx.save_model`); `extra` holds
    other trainable modules (e.g. hidden-state projections) kept in the state file only.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        ctx: RunContext,
        stage: str,
        *,
        model: nn.Module,
        loss_fn: LossFn,
        data: TrainData,
        extra: nn.Module | None = None,
        evaluation: Evaluation | None = None,
        desc: str = "train",
        find_unused_parameters: bool = True,
    ):
        self.ctx, self.desc, self.dist, self.device = ctx, desc, ctx.dist, ctx.device
        precision = resolve_precision(cfg.precision, ctx.device)
        if precision == "fp16" and ctx.device.type != "cuda":
            raise UserError("precision=fp16 needs a CUDA GPU; on CPU use precision=bf16 or fp32")
        if len(data.lengths) == 0:
            raise UserError(f"{desc}: the training set is empty")
        if cfg.batch_size < self.dist.world:
            raise UserError(
                f"{desc}: batch_size={cfg.batch_size} is the global batch and must be at least "
                f"the number of processes ({self.dist.world})"
            )
        self.cfg, self.precision = cfg, precision
        self.model, self.extra, self.loss_fn = model, extra, loss_fn
        self.lengths = np.asarray(data.lengths, dtype=np.int64)
        self.collate, self.evaluation = data.collate, evaluation
        self.seed = ctx.seed
        self.out_dir = Path(ctx.root) / stage
        self.log = MetricsLog(self.out_dir / "metrics.jsonl")
        self.pos = Position()
        self.modules = [m for m in (model, extra) if m is not None]
        self.params = [p for m in self.modules for p in m.parameters() if p.requires_grad]
        self.objective: nn.Module = _Objective(self.modules, loss_fn)
        if self.dist.enabled:
            self.objective = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        self.batches_per_epoch = math.ceil(len(self.lengths) / cfg.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.optimizer = build_optimizer(self.modules, cfg)
        self.scheduler = linear_schedule(self.optimizer, self.total_steps, cfg.warmup_ratio)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.skipped_steps = 0
        self.last_eval: dict[str, float] | None = None

    def save_model(self, model: nn.Module, directory: Path) -> None:
        self.ctx.save_model(model, directory)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Train to `total_steps`, resuming as `ctx.resume` says; a finished stage is skipped
        (resume=auto) with its final weights loaded into the model."""
        resume = self.ctx.resume
        if resume == "auto" and (self.out_dir / "final" / ckpt.STATE_FILE).is_file():
            return self._skip_finished()
        if not self._restore(resume):
            torch.manual_seed(self.seed + self.dist.rank)  # ranks draw different dropout masks
        for m in self.modules:
            m.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.pos.step,
            desc=self.desc,
            unit="step",
            disable=not self.dist.is_main,
        )
        evaluated_at = -1
        try:
            while self.pos.step < self.total_steps:
                for group in self._groups_left_in_epoch():
                    stats = self._step(group)
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss']:.4f}")
                    self._maybe_log(stats)
                    if self.cfg.eval_steps and self.pos.step % self.cfg.eval_steps == 0:
                        self._evaluate()
                        evaluated_at = self.pos.step
                    if self.cfg.save_steps and self.pos.step % self.cfg.save_steps == 0:
                        self._save_step_checkpoint()
                    if self.pos.step >= self.total_steps:
                        break
                else:  # the epoch ran out of batches
                    self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
                    if evaluated_at != self.pos.step:
                        self._evaluate()
                        evaluated_at = self.pos.step
        except KeyboardInterrupt:
            self._save_step_checkpoint()
            raise UserError(
                f"{self.desc}: interrupted at step {self.pos.step}; a checkpoint was saved in "
                f"{self.out_dir} — run the same command with resume=auto to continue"
            ) from None
        finally:
            bar.close()
        if evaluated_at != self.pos.step:
            self._evaluate()
        result = self._finish()
        self.dist.barrier()  # final/ is on disk before any process goes on to read it
        return result

    def _skip_finished(self) -> TrainResult:
        final = self.out_dir / "final"
        state = ckpt.load_state(final)
        self.model.load_state_dict(state["model"])
        self.pos = Position(**state["position"])
        if self.dist.is_main:
            tqdm.write(f"{self.desc}: already finished ({final}); skipping")
        return self._result()

    def _groups_left_in_epoch(self) -> Iterator[list[list[int]]]:
        """Micro-batch groups (one optimizer step each) of the current epoch not yet consumed."""
        order = batch_order(
            self.lengths,
            self.cfg.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=self.pos.epoch,
            group_by_length=self.cfg.group_by_length,
        )
        for start in range(self.pos.batch, len(order), self.cfg.grad_accum):
            yield order[start : start + self.cfg.grad_accum]

    def _local_batch(self, indices: list[int]) -> Batch | None:
        """This process's rows of a global micro-batch, on the device (None if it has none).

        Distributed, the batch also carries the global batch's row, token and token-pair counts
        that the losses average over (see objectives.py).
        """
        if self.dist.enabled:
            lengths = self.lengths[indices].astype(np.float64)
            norms = {
                "norm_rows": float(len(indices)),
                "norm_tokens": lengths.sum(),
                "norm_pairs": np.square(lengths).sum(),
            }
            indices = indices[self.dist.rank :: self.dist.world]
            if not indices:
                return None
        batch = self.collate(indices)
        if self.dist.enabled:
            batch.update({k: torch.tensor(v, dtype=torch.float32) for k, v in norms.items()})
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _step(self, group: list[list[int]]) -> dict[str, float]:
        """One optimizer step over `group` micro-batches (gradient accumulation)."""
        t0 = time.perf_counter()
        totals: dict[str, float] = {}
        for k, indices in enumerate(group):
            batch = self._local_batch(indices)
            # Accumulating under DDP: all-reduce the gradients once, after the last micro-batch.
            defer = self.dist.enabled and k < len(group) - 1
            no_sync = self.objective.no_sync if defer else contextlib.nullcontext
            with no_sync(), autocast(self.device, self.precision):
                loss, parts = self.objective(batch)
            if not torch.isfinite(loss):
                raise UserError(
                    f"{self.desc}: loss became {loss.item()} at step {self.pos.step + 1}; "
                    "lower the learning rate or use precision=fp32"
                )
            # DDP averages gradients over processes; each slice's loss is already a share of
            # the global batch's, so scale back up to a sum.
            scaled = loss * (self.dist.world / len(group))
            with no_sync():
                self.scaler.scale(scaled).backward()
            for key, value in {"loss": loss.item(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + value / len(group)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale_before:
            self.skipped_steps += 1  # fp16 overflow: the step was skipped, the scale halved
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.pos.step += 1
        self.pos.batch += len(group)
        elapsed = time.perf_counter() - t0
        rows = [i for indices in group for i in indices]  # the global batch: same on every rank
        return {
            **totals,
            "grad_norm": float(grad_norm),
            "examples_per_s": len(rows) / elapsed,
            "tokens_per_s": float(self.lengths[rows].sum()) / elapsed,
        }

    # ------------------------------------------------------------------ logging and evaluation

    def _maybe_log(self, stats: dict[str, float]) -> None:
        if self.pos.step % max(1, self.cfg.log_steps) and self.pos.step != self.total_steps:
            return
        if self.dist.enabled:  # each slice's loss is its share of the global batch's: add them
            every = self.dist.gather({k: v for k, v in stats.items() if k.endswith("loss")})
            stats = {**stats, **{k: sum(s.get(k, 0.0) for s in every) for k in every[0]}}
        if not self.dist.is_main:
            return
        record = {
            "step": self.pos.step,
            "epoch": round(self.pos.epoch + self.pos.batch / self.batches_per_epoch, 4),
            "lr": self.scheduler.get_last_lr()[0],
            **{k: round(v, 6) for k, v in stats.items()},
        }
        if self.scaler.is_enabled():
            record.update(loss_scale=self.scaler.get_scale(), skipped_steps=self.skipped_steps)
        self.log.write(record)

    def _evaluate(self) -> None:
        if self.evaluation is None:
            return
        for m in self.modules:
            m.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            metrics = self.evaluation.run()
        for m in self.modules:
            m.train()
        self.last_eval = metrics
        if self.dist.is_main:
            self.log.write({"step": self.pos.step, "eval": metrics})
        metric = self.evaluation.metric
        value = metrics.get(metric)
        if value is None:
            raise UserError(
                f"{self.desc}: the dev metrics have no {metric!r} (they have "
                f"{', '.join(metrics)}); choose one of those as the selection metric"
            )
        if self.pos.best_metric is None or value > self.pos.best_metric:
            self.pos.best_metric, self.pos.best_step = value, self.pos.step
            if self.dist.is_main:
                ckpt.write_atomic(self.out_dir / "best", lambda d: self.save_model(self.model, d))
        if not self.dist.is_main:
            return
        tqdm.write(
            f"{self.desc} step {self.pos.step}: {metric} = {value:.4f}; "
            f"best {metric} = {self.pos.best_metric:.4f} at step {self.pos.best_step}"
        )
        if self.pos.best_step == self.pos.step and _constant_predictor(metrics):
            tqdm.write(
                f"warning: {self.desc}: the model kept as best/ (step {self.pos.step}) predicts "
                "one class for every dev row; it has not learned the task yet (train longer, "
                "or check the learning rate and data)"
            )

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        state = {
            "position": asdict(self.pos),
            "model": self.model.state_dict(),
            "extra": self.extra.state_dict() if self.extra is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "skipped_steps": self.skipped_steps,
            "total_steps": self.total_steps,
            "rng_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _write_checkpoint(self, target: Path) -> None:
        if not self.dist.is_main:
            return

        def write(tmp: Path) -> None:
            self.save_model(self.model, tmp)
            ckpt.save_state(tmp, self._state())

        ckpt.write_atomic(target, write)

    def _save_step_checkpoint(self) -> None:
        self._write_checkpoint(self.out_dir / f"checkpoint-{self.pos.step}")
        if self.dist.is_main:
            ckpt.rotate(self.out_dir, self.cfg.max_checkpoints)

    def _finish(self) -> TrainResult:
        final = self.out_dir / "final"
        self._write_checkpoint(final)
        if self.dist.is_main:
            self.log.write(
                {"step": self.pos.step, "done": True, "best_metric": self.pos.best_metric}
            )
        return self._result()

    def _result(self) -> TrainResult:
        best = self.out_dir / "best"
        return TrainResult(
            steps=self.pos.step,
            final_dir=self.out_dir / "final",
            best_dir=best if best.is_dir() else None,
            best_metric=self.pos.best_metric,
            best_step=self.pos.best_step,
            last_eval=self.last_eval,
        )

    def _restore(self, resume: str | Path | None) -> bool:
        """Load a checkpoint's full state. Returns False when there is nothing to resume."""
        if resume is None:
            return False
        if str(resume) == "auto":
            found = ckpt.step_checkpoints(self.out_dir)
            if not found:
                return False
            resume = found[-1]
        path = Path(resume)
        if not (path / ckpt.STATE_FILE).is_file():
            raise UserError(f"resume: {path} is not a checkpoint (no {ckpt.STATE_FILE} in it)")
        state = ckpt.load_state(path)
        if state["total_steps"] != self.total_steps:
            raise UserError(
                f"resume: {path} was made for {state['total_steps']} steps but this run has "
                f"{self.total_steps}; resume with the same epochs, batch_size and grad_accum"
            )
        self.model.load_state_dict(state["model"])
        if self.extra is not None:
            self.extra.load_state_dict(state["extra"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = state["skipped_steps"]
        self.pos = Position(**state["position"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if self.dist.enabled:  # the saved RNG state is rank 0's; give the others their own
            torch.manual_seed(self.seed + self.dist.rank + self.pos.step)
        if self.dist.is_main:
            tqdm.write(f"{self.desc}: resumed from {path} at step {self.pos.step}")
        return True
