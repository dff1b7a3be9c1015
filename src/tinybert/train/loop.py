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
each slice's loss is normalised by the global batch's counts (`Batch.norm_*`, see
`objective.py`), so the weights after K steps equal a one-process run's with the same batch size.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from tinybert.config import TrainConfig
from tinybert.data.batching import batch_order
from tinybert.data.task_data import TaskData
from tinybert.errors import Interrupted, UserError
from tinybert.paths import write_atomic
from tinybert.train import checkpoint as ckpt
from tinybert.train.context import StageContext
from tinybert.train.health import WEIGHT_LIMIT, last_sound_checkpoint, unsound_weight
from tinybert.train.objective import Batch, Objective
from tinybert.train.optim import build_optimizer, linear_schedule
from tinybert.train.precision import autocast, explain_precision, precision_label
from tinybert.train.progress import MetricsLog, Progress
from tinybert.train.resume import (
    DATA_KEY,
    RESUMABLE,
    check_length,
    check_settings,
    data_fingerprint,
    find_resume,
    load_weights,
    plain,
    write_config,
)
from tinybert.train.signals import StopSignals

__all__ = [
    "INIT_FILE",
    "Batch",
    "Collated",
    "Evaluation",
    "Objective",
    "StageContext",
    "TrainData",
    "TrainResult",
    "Trainer",
]

INIT_FILE = "init.json"  # in a stage folder: how its model was initialised (Trainer's `init`)

# Rows as the data layer collates them (`tinybert.data.collate`, a corpus's `collate`): tensors
# by name; the loop turns them into a `Batch` (`Batch.from_rows`).
Collated = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TrainData:
    """The training set as the loop sees it: row lengths, and `collate(indices)` -> those rows
    collated (input_ids, attention_mask, token_type_ids, and labels and index where the data
    has them; see `Batch.from_rows`).

    Token tasks also give `scored`, each row's number of scored tokens (labels not -100), from
    which a distributed run counts the global batch's (`Batch.norm_scored`).
    `content()` streams the whole set (arrays or bytes) for the resume fingerprint; without it
    every row is collated and hashed (exact, slower; see resume.data_fingerprint).
    """

    lengths: Sequence[int] | np.ndarray
    collate: Callable[[list[int]], Collated]
    scored: Sequence[int] | np.ndarray | None = None
    content: Callable[[], Iterable[Any]] | None = None

    @classmethod
    def of_task(cls, data: TaskData) -> TrainData:
        """A task's training split (its tokenised arrays stream the resume fingerprint)."""
        train = data.train_set()
        return cls(
            lengths=train.lengths,
            collate=data.collate_fn(train),
            scored=data.train_scored(),
            content=data.train_content,
        )


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
    best_constant: bool = False  # best/ answered one class for every row of some dev split
    evaluated_at: int = -1  # the step of the latest evaluation (none twice at one step)


@dataclass
class TrainResult:
    steps: int
    final_dir: Path
    best_dir: Path | None
    best_metric: float | None
    best_step: int | None
    last_eval: dict[str, float] | None


def _constant_predictor(metrics: dict[str, float]) -> bool:
    """Whether a classifier answered the same class for every row of some dev split."""
    return any(k.split("/")[-1] == "predicted_classes" and v == 1 for k, v in metrics.items())


class _Objective(nn.Module):
    """The trainable modules plus the loss, as one module for DistributedDataParallel to wrap.

    DDP must see the forward that produces the loss; here that is `loss_fn(batch)`, which reads
    the same parameters. A process whose slice of a small last batch is empty still takes part
    in the gradient all-reduce, with a zero loss that touches every parameter.
    """

    def __init__(self, modules: list[nn.Module], loss_fn: Objective):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.loss_fn = loss_fn

    def forward(self, batch: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        if batch is None:
            # A tensor: sum() starts from 0 and there is always a trainable parameter.
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            return cast(torch.Tensor, zero), {}
        return self.loss_fn(batch)


class Trainer:
    """Runs one training stage: `data.collate(indices)` builds a batch; `loss_fn(batch)` (an
    `Objective`) scores it.

    `model` is what gets saved as a Hugging Face directory (via `ctx.save_model`); `extra` holds
    other trainable modules (e.g. hidden-state projections) kept in the state file only.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        ctx: StageContext,
        stage: str,
        *,
        model: nn.Module,
        loss_fn: Objective,
        data: TrainData,
        extra: nn.Module | None = None,
        evaluation: Evaluation | None = None,
        desc: str = "train",
        find_unused_parameters: bool = True,
        section: str = "",
        settings: Mapping[str, Any] | None = None,
        init: Mapping[str, Any] | None = None,
    ):
        self.ctx, self.desc, self.dist, self.device = ctx, desc, ctx.dist, ctx.device
        # The config section of `cfg` (e.g. "finetune"), for messages and the fingerprint; and
        # the other settings that define this stage (dotted key -> value, see `fingerprint`).
        self.section, self.settings = section, dict(settings or {})
        # How the model was initialised (e.g. the student's resolved student.init), written as
        # <stage>/INIT_FILE with config.yaml, for the report and the model cards to read.
        self.init = None if init is None else dict(init)
        self._signals = StopSignals(desc, announce=ctx.dist.is_main)
        precision, self.precision_why = explain_precision(cfg.precision, ctx.device)
        # Every process trains in rank 0's precision: a timing probe (auto where the CPU says
        # nothing) might answer differently on a busy rank, and the fingerprint must agree.
        precision = ctx.dist.gather(precision)[0]
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
        self.scored = None if data.scored is None else np.asarray(data.scored, dtype=np.int64)
        self.collate, self.evaluation = data.collate, evaluation
        self.content = data.content
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
        """Train to `total_steps`, resuming as `ctx.resume` says (see resume.find_resume); a stage
        whose final/ already holds `total_steps` steps is skipped, its weights loaded.

        The stage folder is locked for the whole stage. A checkpoint is checked against this
        run's settings (`fingerprint`) before anything is written; config.yaml is written only
        once training starts. SIGINT and SIGTERM stop at a step boundary with that step saved."""
        with self._claim():
            source, state = find_resume(self.ctx.resume_for(self.out_dir), self.out_dir)
            if source is not None and state is not None:
                self._check_resume(source, state)
                if source.name == "final" and state["position"]["step"] == self.total_steps:
                    return self._skip_finished(source, state)
            self._announce_precision()
            self._write_config(source, state)
            if source is not None and state is not None:
                self._load(source, state)
            else:
                torch.manual_seed(self.seed + self.dist.rank)  # ranks draw different masks
                if self.dist.is_main:  # rows of a run killed before its first checkpoint
                    self.log.start_fresh()
            self.loss_fn.prepare()  # e.g. phase 2's teacher logits: every process, first
            return self._train()

    def _train(self) -> TrainResult:
        for m in self.modules:
            m.train()
        progress = Progress(self.total_steps, self.pos.step, self.desc, self.dist.is_main)
        try:
            with self._signals:
                while self.pos.step < self.total_steps:
                    for group in self._groups_left_in_epoch():
                        stats = self._step(group)
                        progress.update(self.pos.step, stats["loss"])
                        self._maybe_log(stats)
                        if self.cfg.eval_steps and self.pos.step % self.cfg.eval_steps == 0:
                            self._evaluate()
                        if self.cfg.save_steps and self.pos.step % self.cfg.save_steps == 0:
                            self._save_step_checkpoint()
                        if self.pos.step >= self.total_steps:
                            break
                        self._stop_if_signalled()
                    else:  # the epoch ran out of batches
                        self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
                        if self.pos.evaluated_at != self.pos.step:
                            self._evaluate()
                        if self.pos.step < self.total_steps:
                            self._stop_if_signalled()
                if self.pos.evaluated_at != self.pos.step:
                    self._evaluate()
                result = self._finish()
        except KeyboardInterrupt:  # not at a step boundary (a third signal): save nothing
            newest = ckpt.step_checkpoints(self.out_dir)
            where = (
                f"the newest checkpoint is {newest[-1]}: run the same command with resume=auto "
                "to continue from it"
                if newest
                else "no checkpoint was saved yet"
            )
            raise Interrupted(
                f"{self.desc}: interrupted during step {self.pos.step + 1}, which was not "
                f"saved; {where}",
                self._signals.signum or signal.SIGINT,
            ) from None
        finally:
            progress.close()
        self._warn_if_constant()
        self.dist.barrier()  # final/ is on disk before any process goes on to read it
        signum = self.dist.max_int(self._signals.signum)
        if signum:  # it came during the last step: the stage is done, the command stops here
            raise Interrupted(
                f"{self.desc}: finished ({result.final_dir}) as {signal.Signals(signum).name} "
                "came; stopping here: run the same command with resume=auto to go on",
                signum,
            )
        return result

    def _stop_if_signalled(self) -> None:
        """At a step boundary: if any process got SIGINT/SIGTERM, save this step and stop."""
        signum = self.dist.max_int(self._signals.signum)
        if not signum:
            return
        target = self.out_dir / f"checkpoint-{self.pos.step}"
        if self.pos.step == 0:
            where = "no step was done, nothing to save"
        else:
            if not (target / ckpt.STATE_FILE).is_file():
                self._save_step_checkpoint()
            self.dist.barrier()
            where = f"saved in {target}; run the same command with resume=auto to continue"
        raise Interrupted(
            f"{self.desc}: stopped by {signal.Signals(signum).name} at step {self.pos.step} "
            f"of {self.total_steps}; {where}",
            signum,
        )

    @contextlib.contextmanager
    def _claim(self) -> Iterator[None]:
        """Lock the stage folder (main process) and clean what a killed run left in it."""
        with contextlib.ExitStack() as stack:
            error = None
            if self.dist.is_main:
                try:
                    stack.enter_context(ckpt.stage_lock(self.out_dir))
                    ckpt.clean_leftovers(self.out_dir)
                    if self.ctx.resume_for(self.out_dir) is None:
                        ckpt.check_unused(self.out_dir)
                except UserError as exc:
                    error = str(exc)
            for message in self.dist.gather(error):
                if message:
                    raise UserError(message)
            yield

    def _announce_precision(self) -> None:
        """The stage's start line: the precision it trains in, and why when auto chose it."""
        if self.dist.is_main:
            label = precision_label(self.precision, self.cfg.precision)
            why = f": {self.precision_why}" if self.precision_why else ""
            tqdm.write(f"{self.desc}: precision {label}{why}")

    def _skip_finished(self, final: Path, state: dict) -> TrainResult:
        load_weights(final, self.model, state["model"], "model")
        self.pos = _position(state)
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
        (and scored-token count, for token tasks) that the losses average over (`Batch.norm_*`).
        """
        if not self.dist.enabled:
            return Batch.from_rows(self.collate(indices)).to(self.device)
        lengths = self.lengths[indices].astype(np.float64)
        counts = {
            "norm_rows": float(len(indices)),
            "norm_tokens": lengths.sum(),
            "norm_pairs": np.square(lengths).sum(),
        }
        if self.scored is not None:
            counts["norm_scored"] = float(self.scored[indices].sum())
        mine = indices[self.dist.rank :: self.dist.world]
        if not mine:
            return None
        norms = {k: torch.tensor(v, dtype=torch.float32) for k, v in counts.items()}
        return replace(Batch.from_rows(self.collate(mine)), **norms).to(self.device)

    def _step(self, group: list[list[int]]) -> dict[str, float]:
        """One optimizer step over `group` micro-batches (gradient accumulation)."""
        t0 = time.perf_counter()
        totals: dict[str, float] = {}
        bad_loss: float | None = None
        for k, indices in enumerate(group):
            batch = self._local_batch(indices)
            # Accumulating under DDP: all-reduce the gradients once, after the last micro-batch.
            defer = self.dist.enabled and k < len(group) - 1
            ddp = self.objective if isinstance(self.objective, DistributedDataParallel) else None
            no_sync = ddp.no_sync if defer and ddp is not None else contextlib.nullcontext
            with no_sync(), autocast(self.device, self.precision):
                loss, parts = self.objective(batch)
            if bad_loss is None and not torch.isfinite(loss):
                bad_loss = loss.item()  # every process still runs backward (DDP's all-reduce)
            # DDP averages gradients over processes; each slice's loss is already a share of
            # the global batch's, so scale back up to a sum.
            scaled = loss * (self.dist.world / len(group))
            with no_sync():
                self.scaler.scale(scaled).backward()
            for key, value in {"loss": loss.item(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + value / len(group)
        if self.dist.max_int(int(bad_loss is not None)):  # every process stops, or none
            value = "nan or inf on another process" if bad_loss is None else bad_loss
            raise self._diverged(f"the loss became {value}", self.pos.step + 1)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        # fp16: the scaler skips a step whose gradients overflowed. Otherwise a non-finite
        # gradient (all-reduced: the same on every process) would make the weights nan.
        if not self.scaler.is_enabled() and not math.isfinite(float(grad_norm)):
            raise self._diverged(f"the gradient norm became {float(grad_norm)}", self.pos.step + 1)
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
            "precision": self.precision,  # as resolved (the config may say auto)
        }
        if self.scaler.is_enabled():
            record.update(loss_scale=self.scaler.get_scale(), skipped_steps=self.skipped_steps)
        self.log.write(record)

    def _evaluate(self) -> None:
        self.pos.evaluated_at = self.pos.step
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
            self.pos.best_constant = _constant_predictor(metrics)
            self._check_weights("best/")
            if self.dist.is_main:
                with self._signals.saving():
                    ckpt.write_atomic(
                        self.out_dir / "best", lambda d: self.save_model(self.model, d)
                    )
        if not self.dist.is_main:
            return
        tqdm.write(
            f"{self.desc} step {self.pos.step}: {metric} = {value:.4f}; "
            f"best {metric} = {self.pos.best_metric:.4f} at step {self.pos.best_step}"
        )

    def _warn_if_constant(self) -> None:
        """Once training is over: warn if the model kept as best/ answers one class for every
        dev row (an early best that later evaluations replaced is no reason to warn)."""
        if self.dist.is_main and self.pos.best_constant:
            tqdm.write(
                f"warning: {self.desc}: the model kept as best/ (step {self.pos.best_step}) "
                "predicts one class for every dev row; it has not learned the task yet (train "
                "longer, or check the learning rate and data)",
                file=sys.stderr,
            )

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        state: dict[str, Any] = {
            "position": asdict(self.pos),
            "model": self.model.state_dict(),
            "extra": self.extra.state_dict() if self.extra is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "skipped_steps": self.skipped_steps,
            "total_steps": self.total_steps,
            "rng_cpu": torch.get_rng_state(),
            "fingerprint": self.fingerprint,
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _write_checkpoint(self, target: Path) -> None:
        self._check_weights(f"{target.name}/")
        if not self.dist.is_main:
            return

        def write(tmp: Path) -> None:
            self.save_model(self.model, tmp)
            ckpt.save_state(tmp, self._state())

        with self._signals.saving():
            ckpt.write_atomic(target, write)

    def _save_step_checkpoint(self) -> None:
        self._write_checkpoint(self.out_dir / f"checkpoint-{self.pos.step}")
        if self.dist.is_main:
            with self._signals.saving():
                ckpt.rotate(self.out_dir, self.cfg.max_checkpoints)

    # ------------------------------------------------------------------ divergence

    def _check_weights(self, what: str) -> None:
        """Refuse to write `what` (best/, a checkpoint) from weights holding nan or inf, or
        larger than WEIGHT_LIMIT: a run that diverged, whose loss may still be finite."""
        bad = unsound_weight(self.modules)
        if bad is None:
            return
        name, value = bad
        problem = (
            f"the weights hold nan or inf ({name})"
            if not math.isfinite(value)
            else f"the weights grew absurdly large (|{name}| up to {value:.3g} > {WEIGHT_LIMIT:g})"
        )
        raise self._diverged(f"{problem}, found before writing {what}")

    def _diverged(self, what: str, step: int | None = None) -> UserError:
        """The error that ends a diverged run: start over with a lower learning rate, and which
        checkpoint (if any) was saved before it with sound weights (see _check_weights)."""
        step = self.pos.step if step is None else step
        lr = f"{self.section}.lr" if self.section else "lr"
        fix = f"a lower learning rate ({lr}, now {self.cfg.lr:g})"
        if self.precision != "fp32":
            fix += f" or precision=fp32 (now {self.precision})"
        last = last_sound_checkpoint(self.out_dir, step)
        tail = (
            f"the last checkpoint saved before it, {last} (weights sound), can be named to go "
            f"on from there (resume={last}; with unchanged settings the same steps follow)"
            if last is not None
            else "no checkpoint with sound weights was saved before it"
        )
        return UserError(
            f"{self.desc}: training diverged at step {step}: {what}; nothing of that step was "
            f"saved. Start over in a new output_dir with {fix}; {tail}"
        )

    def _finish(self) -> TrainResult:
        final = self.out_dir / "final"
        self._write_checkpoint(final)
        if self.dist.is_main:
            self.log.write(
                {
                    "step": self.pos.step,
                    "done": True,
                    "best_metric": self.pos.best_metric,
                    "best_step": self.pos.best_step,
                    "precision": self.precision,
                }
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

    # ------------------------------------------------------------------ resume

    @functools.cached_property
    def fingerprint(self) -> dict[str, Any]:
        """The settings that define this stage's run, saved in every checkpoint: a resume with
        other values is refused (`_check_resume`). The TrainConfig fields except those that may
        change on resume (`RESUMABLE`), the precision actually used, the recipe's `settings`
        (task, model, student, distillation, seed, ...) and the training data."""
        prefix = f"{self.section}." if self.section else ""
        out = {prefix + k: plain(v) for k, v in asdict(self.cfg).items() if k not in RESUMABLE}
        out[prefix + "precision"] = self.precision  # as resolved (precision=auto)
        out.update({k: plain(v) for k, v in self.settings.items()})
        out[DATA_KEY] = data_fingerprint(self.lengths, self.collate, self.content)
        return out

    def _check_resume(self, path: Path, state: dict) -> None:
        """Refuse a checkpoint made with other settings, or past this run's last step."""
        check_settings(path, state.get("fingerprint") or {}, self.fingerprint)
        prefix = f"{self.section}." if self.section else ""
        asked = (
            f"{prefix}max_steps={self.cfg.max_steps}"
            if self.cfg.max_steps
            else f"{prefix}epochs={self.cfg.epochs:g}"
        )
        check_length(path, state["position"]["step"], self.total_steps, asked)

    def _write_config(self, source: Path | None, state: dict | None) -> None:
        if self.dist.is_main and self.ctx.config_text is not None:
            step = state["position"]["step"] if state is not None else None
            write_config(self.out_dir, self.ctx.config_text, source, step)
        if self.dist.is_main and self.init is not None:
            write_atomic(self.out_dir / INIT_FILE, json.dumps(self.init, indent=2) + "\n")

    def _load(self, path: Path, state: dict) -> None:
        """Load a checkpoint's full state: weights, optimizer, schedule, position, RNG."""
        load_weights(path, self.model, state["model"], "model")
        if self.extra is not None:
            load_weights(path, self.extra, state.get("extra"), "extra modules")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UserError(
                f"resume: {path} holds an optimizer state that does not fit this run "
                f"({' '.join(str(exc).split())}); name a checkpoint of this run"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        planned = state["total_steps"]
        if planned != self.total_steps:  # max_steps/epochs changed: the new length's schedule
            sched = self.scheduler
            for group, base, factor in zip(
                self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True
            ):
                group["lr"] = base * factor(sched.last_epoch)
            sched._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = state["skipped_steps"]
        self.pos = _position(state)
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if self.dist.enabled:  # the saved RNG state is rank 0's; give the others their own
            torch.manual_seed(self.seed + self.dist.rank + self.pos.step)
        if self.dist.is_main:
            self.log.resume_at(self.pos.step)
            note = (
                f" (planned for {planned} steps, now {self.total_steps}: the learning rate "
                "follows the new length's schedule from here)"
                if planned != self.total_steps
                else ""
            )
            tqdm.write(f"{self.desc}: resumed from {path} at step {self.pos.step}{note}")


def _position(state: dict) -> Position:
    known = {f for f in Position.__dataclass_fields__}
    return Position(**{k: v for k, v in state["position"].items() if k in known})
