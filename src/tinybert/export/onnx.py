"""Export a saved model to ONNX, check it against PyTorch, and optionally optimise and quantise it.

    result = export_model("runs/sst2/student/prediction/best", "runs/sst2/onnx",
                          optimize=True, int8=True)
    print("\\n".join(result.summary()))

The export folder is all a server needs:
    model.onnx            fp32. Inputs input_ids, attention_mask, token_type_ids: (B, T) int64,
                          B and T dynamic (no token_type_ids for a model without segment ids,
                          type_vocab_size 1: a RoBERTa-style student); output logits: (B, C),
                          or (B, T, C) for a token head
    model_optimized.onnx  (optimize) ONNX Runtime's BERT fusions: Attention,
                          EmbedLayerNormalization, BiasGelu (not SkipLayerNormalization:
                          slower on CPU, see runtime.SLOW_FUSIONS)
    model_int8.onnx       (int8) weights quantised to int8, activations at run time (dynamic)
    config.json, vocab.txt / tokenizer.json ...   labels (id2label) and the tokenizer
    export.json           what the checks measured: logit differences, sizes, metrics

Before the folder appears, every fp32 file is run next to PyTorch on generated batches (and on the
task's dev data when given); a logit difference above 1e-4 is an error and nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinybert.config import Config
from tinybert.data import TaskDataset, TaskSpec, load_tokenizer, tokenizer_info
from tinybert.data.metrics import compute_metrics
from tinybert.data.task_data import check_labels, load_task_data, task_spec
from tinybert.errors import UserError
from tinybert.export.runtime import (
    FP32_FILE,
    INPUT_NAMES,
    INT8_FILE,
    OPTIMIZED_FILE,
    OUTPUT_NAME,
    OnnxLogits,
    is_export_dir,
)
from tinybert.model import BertTaskModel, load_model, load_model_config, saved_head
from tinybert.model.bert import Layer, SelfAttention
from tinybert.model.hub import CONFIG_FILE, TOKENIZER_FILES, WEIGHTS_FILES
from tinybert.train.inference import predict_logits, torch_logits_fn

TOLERANCE = 1e-4  # largest fp32 logit difference accepted between PyTorch and ONNX Runtime
MIN_OPSET = 17  # LayerNormalization is a single op from 17 on (and ORT's fusions expect it)
REPORT_FILE = "export.json"
CHECK_BATCH_SIZES = (1, 4, 16)


@dataclass
class ExportResult:
    """What export_model wrote and measured."""

    out_dir: str
    head: str  # "sequence" or "token"
    files: dict[str, int]  # file in out_dir -> size in bytes
    torch_bytes: int  # the source model's weights file
    max_diff: dict[str, float]  # ONNX file -> largest |logit difference| vs PyTorch
    checked_on: str  # the inputs the differences were measured on
    fused: dict[str, int] = field(default_factory=dict)  # optimised graph: fused op -> count
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # backend -> dev metrics
    main_metric: str | None = None

    def summary(self) -> list[str]:
        """Human-readable lines: checks, fusions, file sizes, metrics."""
        lines = [f"exported {self.head}-classification model -> {self.out_dir}"]
        lines.append(f"checked on {self.checked_on}:")
        for name, diff in self.max_diff.items():
            verdict = "(int8, not held to 1e-4)" if name == INT8_FILE else f"OK (<= {TOLERANCE:g})"
            lines.append(f"  {name}: max |logit diff| vs PyTorch {diff:.2e} {verdict}")
        if self.fused:
            ops = ", ".join(f"{op} x{n}" for op, n in self.fused.items())
            lines.append(f"fused in {OPTIMIZED_FILE}: {ops}")
        onnx_files = {n: b for n, b in self.files.items() if n.endswith(".onnx")}
        sizes = ", ".join(f"{n} {_mb(b)}" for n, b in onnx_files.items())
        rest = sum(self.files.values()) - sum(onnx_files.values())
        lines.append(
            f"files: {sizes}, config + tokenizer {_mb(rest)} (PyTorch weights {_mb(self.torch_bytes)})"
        )
        lines += self._metric_lines()
        return lines

    def _metric_lines(self) -> list[str]:
        if not self.metrics or self.main_metric is None:
            return []
        key = self.main_metric
        parts = [f"{name} {m[key]:.4f}" for name, m in self.metrics.items()]
        lines = [f"dev {key}: " + ", ".join(parts)]
        if INT8_FILE in self.metrics:
            fp32 = self.metrics["pytorch"][key]
            delta = 100 * (self.metrics[INT8_FILE][key] - fp32)
            lines.append(f"int8 quantisation changes dev {key} by {delta:+.2f} points")
        return lines


# ---------------------------------------------------------------------------------------------
# the exported graph


class ExportableBert(nn.Module):
    """A tinybert head model's forward, restated in the op patterns ONNX Runtime fuses.

    Same weights and the same arithmetic as the model (the export check proves it to 1e-4), but:
    positions come from slicing a constant (1, max_positions) buffer, not arange, so
    EmbedLayerNormalization fuses; the padding mask is HF's additive (1 - mask) * min built once, so Attention fuses; and
    there is no data-dependent "no padding" branch, which tracing would freeze.

    A sequence head's last layer computes the [CLS] row alone (keys and values from every
    token), the one row the pooler reads, as the PyTorch model does: 1.1-1.25x faster serving
    of a 4-layer student (BENCHMARKS.md, serving). ORT's attention fusion does not match that
    layer; the others fuse.

    A model with one segment (type_vocab_size 1) has no token_type_ids input: its one
    token-type row is added to every position row once, here (word + position-and-type, the
    pattern ONNX Runtime fuses for models without segments), instead of at every call.
    """

    positions: Tensor  # (1, max_positions) buffer
    position_rows: Tensor  # (max_positions, H): position rows + the one token-type row

    def __init__(self, model: BertTaskModel):
        super().__init__()
        self.model = model
        self.token_head = not hasattr(model.bert, "pooler") or model.bert.pooler is None
        self.token_types = has_segments(model)
        positions = torch.arange(model.config.max_position_embeddings)[None]
        self.register_buffer("positions", positions, persistent=False)
        if not self.token_types:
            emb = model.bert.embeddings
            rows = emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
            self.register_buffer("position_rows", rows.detach().clone(), persistent=False)

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs, in forward's order."""
        return [n for n in INPUT_NAMES if self.token_types or n != "token_type_ids"]

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """(B, T) int64 each -> logits (B, C) (token head: (B, T, C)). token_type_ids only
        for a model with segments (else not an input of the graph)."""
        bert = self.model.bert
        emb = bert.embeddings
        positions = self.positions[:, : input_ids.size(1)]  # (1, T)
        if token_type_ids is None:
            h = emb.word_embeddings(input_ids) + F.embedding(positions, self.position_rows)
        else:
            h = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids)
            h = h + emb.position_embeddings(positions)
        h = emb.LayerNorm(h)  # (B, T, H)
        # 0 for real tokens, finfo.min for padding: the values the model's masked_fill uses.
        bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        # nn.ModuleList is not generic; the encoder's entries are Layers.
        layers = cast(Sequence[Layer], bert.encoder.layer)
        for i, layer in enumerate(layers):
            rows = h[:, :1] if not self.token_head and i == len(layers) - 1 else h
            a = layer.attention.output(_attend(layer.attention.self, rows, h, bias), rows)
            h = layer.output(layer.intermediate(a), a)
        pooler = bert.pooler  # None exactly for the token head
        return self.model.head(h if self.token_head or pooler is None else pooler(h))


def _attend(att: SelfAttention, rows: Tensor, x: Tensor, bias: Tensor) -> Tensor:
    """Multi-head attention of the query rows (B, R, H) over x (B, T, H) with an additive bias
    (B, 1, 1, T) -> (B, R, H)."""
    B = x.size(0)
    q, k, v = (
        lin(y).view(B, -1, att.num_heads, att.head_size).transpose(1, 2)  # (B, A, R|T, D)
        for lin, y in ((att.query, rows), (att.key, x), (att.value, x))
    )
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, A, R, D)
    return context.transpose(1, 2).reshape(B, rows.size(1), -1)


def has_segments(model: BertTaskModel) -> bool:
    """Whether the model reads segment ids: it has more than one token-type row (a student of
    a RoBERTa-style teacher has one, and every type id is 0)."""
    return model.config.type_vocab_size > 1


def load_for_export(model_dir: str | Path) -> tuple[BertTaskModel, str]:
    """The fp32 model of a saved directory and its head ("sequence" or "token").

    The head follows config.json's "architectures"; a model without a trained head is refused
    (its logits would be random)."""
    head = saved_head(model_dir)
    model, report = load_model(model_dir, head=head)
    if report.initialised:
        raise UserError(
            f"{model_dir} has no trained {head}-classification head "
            f"({', '.join(report.initialised)} missing); export a fine-tuned or distilled model"
        )
    return model, head


def write_onnx(model: BertTaskModel, path: Path, opset: int = MIN_OPSET) -> None:
    """torch.onnx.export with dynamic batch and sequence axes.

    TorchScript tracing (dynamo=False): ONNX Runtime's attention fusion matches its graphs; the
    dynamo exporter's differ. The trace input has padding so the mask path is recorded."""
    # eval: the exporter restores the wrapper's mode afterwards, and with it the model's
    wrapper = ExportableBert(model).eval()
    length = min(8, model.config.max_position_embeddings)
    ids = torch.full((2, length), 1, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0
    names = wrapper.input_names
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[OUTPUT_NAME] = {0: "batch", 1: "sequence"} if wrapper.token_head else {0: "batch"}
    inputs = (ids, mask, torch.zeros_like(ids))[: len(names)]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check follows
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def optimize_onnx(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer (model_type "bert"), all its BERT fusions but
    SkipLayerNormalization (see runtime.SLOW_FUSIONS). Returns fused op -> count."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    with _quiet_logging():
        optimized = optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=options,
        )
        optimized.save_model_to_file(str(dst))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation: int8 weights, activations quantised per batch at run time.

    Per-channel weight scales: per-tensor ones cost a fine-tuned MiniLM 1.8 points of SST-2 dev
    accuracy, per-channel ones none. `src` is the plain fp32 graph: quantising it and letting ORT
    fuse at load time was faster and as accurate as quantising the optimised graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """ONNX Runtime's Python tools log every pattern tried and generic advice; we report what
    matters (fusions, differences) ourselves."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ---------------------------------------------------------------------------------------------
# checks


def generated_batches(
    vocab_size: int, max_positions: int, pad_id: int = 0, seed: int = 0, segments: bool = True
) -> list[dict[str, Tensor]]:
    """Batches of sizes CHECK_BATCH_SIZES with random ids, each row its own length (2 to 64
    tokens, so rows are padded) and a random segment-B tail (type ids 1; none, all 0, without
    `segments`): what real batches look like."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for size in CHECK_BATCH_SIZES:
        lengths = torch.randint(2, min(64, max_positions) + 1, (size,), generator=g)
        width = int(lengths.max())
        ids = torch.randint(0, vocab_size, (size, width), generator=g)
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        split = (lengths * torch.rand(size, generator=g)).long()[:, None]
        types = ((torch.arange(width)[None] >= split) & mask.bool() & segments).long()
        batches.append(
            {"input_ids": ids.masked_fill(mask == 0, pad_id), "attention_mask": mask,
             "token_type_ids": types}
        )  # fmt: skip
    return batches


def max_logit_diff(
    expected: list[Tensor], fn: Callable, batches: list[dict[str, Tensor]], token_head: bool
) -> float:
    """Largest |expected - fn(batch)| over the batches' logits; a token head counts real tokens
    only. expected[i]: the reference logits of batches[i], (B, C) or (B, T, C)."""
    worst = 0.0
    for batch, want in zip(batches, expected, strict=True):
        diff = (torch.as_tensor(fn(batch)).float() - want.float()).abs()
        if token_head:  # padded positions' logits are never read
            diff = diff[batch["attention_mask"].bool()]
        worst = max(worst, float(diff.max()))
    return worst


def _split_logits(
    fn: Callable | nn.Module, splits: dict[str, TaskDataset], batch_size: int, pad_id: int
) -> dict[str, Tensor]:
    """Sequence heads' (N, C) logits per split."""
    out = {}
    for name, data in splits.items():
        logits = predict_logits(fn, data, batch_size, pad_id=pad_id)
        assert isinstance(logits, Tensor)  # a sequence head's (N, C), not a token head's rows
        out[name] = logits
    return out


def _metrics(
    task: TaskSpec, logits: dict[str, Tensor], splits: dict[str, TaskDataset]
) -> dict[str, float]:
    """compute_metrics per split, keys prefixed "split/" when there are several (as
    evaluate_splits does)."""
    out = {}
    for name, data in splits.items():
        prefix = "" if len(splits) == 1 else f"{name}/"
        values = logits[name].numpy()
        metrics = compute_metrics(task, values, np.array(data.labels))
        out.update({prefix + k: v for k, v in metrics.items()})
    return out


# ---------------------------------------------------------------------------------------------
# the command


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    opset: int = MIN_OPSET,
    optimize: bool = False,
    int8: bool = False,
    splits: dict[str, TaskDataset] | None = None,
    task: TaskSpec | None = None,
    batch_size: int = 32,
) -> ExportResult:
    """Export `model_dir` into `out_dir` (see the module docstring), check, and report.

    splits/task (a task's dev data, tokenised with this model's tokenizer; sequence heads): also
    check on real inputs and report the dev metrics of PyTorch, ONNX fp32 and int8.
    Raises UserError if an fp32 file differs from PyTorch by more than TOLERANCE.
    """
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: use {MIN_OPSET} or newer")
    model_dir, out = Path(model_dir), Path(out_dir)
    model, head = load_for_export(model_dir)
    # The export must carry a working tokenizer: fail before exporting if there is none.
    _, pad_id = tokenizer_info(load_tokenizer(model_dir))
    tmp = _staging_dir(model_dir, out)
    try:
        files, fused = _write_files(model, model_dir, tmp, opset, optimize, int8)
        result = _check(model, head, tmp, files, splits, task, pad_id, batch_size)
        result.fused = fused
        result.files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        result.torch_bytes = _weights_bytes(model_dir)
        result.out_dir = str(out)
        (tmp / REPORT_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n")
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def export_for_task(
    model_dir: str | Path,
    out_dir: str | Path,
    cfg: Config | None,
    opset: int = MIN_OPSET,
    optimize: bool = False,
    int8: bool = False,
) -> ExportResult:
    """`tinybert export`: export_model, checked on and scoring the task's dev data when a run
    config is given (`--config`), else on generated batches only."""
    if cfg is None:
        return export_model(model_dir, out_dir, opset=opset, optimize=optimize, int8=int8)
    task = task_spec(cfg.task)
    config = load_model_config(model_dir)
    check_labels(config, task, str(model_dir))
    data = load_task_data(cfg.task, str(model_dir), cfg.seed, False, config.vocab_size)
    # evaluate's batch size: int8 results depend a little on batch composition (dynamic
    # quantisation scales each activation tensor as a whole), so the two then agree.
    return export_model(
        model_dir,
        out_dir,
        opset=opset,
        optimize=optimize,
        int8=int8,
        splits=data.dev,
        task=task,
        batch_size=cfg.finetune.eval_batch_size,
    )


def _write_files(
    model: BertTaskModel, model_dir: Path, folder: Path, opset: int, optimize: bool, int8: bool
) -> tuple[list[str], dict[str, int]]:
    """model.onnx (+ optimised, + int8) and the config/tokenizer files; returns the ONNX names."""
    write_onnx(model, folder / FP32_FILE, opset)
    for name in (CONFIG_FILE, *TOKENIZER_FILES):
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, folder / name)
    files, fused = [FP32_FILE], {}
    if optimize:
        cfg = model.config
        fused = optimize_onnx(
            folder / FP32_FILE, folder / OPTIMIZED_FILE, cfg.num_attention_heads, cfg.hidden_size
        )
        files.append(OPTIMIZED_FILE)
    if int8:
        quantize_int8(folder / FP32_FILE, folder / INT8_FILE)
        files.append(INT8_FILE)
    return files, fused


def _check(
    model: BertTaskModel,
    head: str,
    folder: Path,
    files: list[str],
    splits: dict[str, TaskDataset] | None,
    task: TaskSpec | None,
    pad_id: int,
    batch_size: int,
) -> ExportResult:
    """Run PyTorch and every ONNX file on the same inputs; fail on an fp32 difference > 1e-4."""
    cfg = model.config
    batches = generated_batches(
        cfg.vocab_size, cfg.max_position_embeddings, pad_id, segments=has_segments(model)
    )
    reference = torch_logits_fn(model)
    with torch.no_grad():
        expected = [reference(b) for b in batches]
    token = head == "token"
    real = splits if splits and task is not None and not token else None
    where = f"{len(batches)} generated batches (batch {'/'.join(map(str, CHECK_BATCH_SIZES))})"
    result = ExportResult("", head, {}, 0, {}, where)
    if real and task is not None:  # (real implies a task; said again for the type checker)
        torch_logits = _split_logits(model, real, batch_size, pad_id)
        result.metrics["pytorch"] = _metrics(task, torch_logits, real)
        first = "" if len(real) == 1 else f"{next(iter(real))}/"  # MNLI: matched
        result.main_metric = first + task.main_metric
        result.checked_on += f" + {sum(len(d) for d in real.values())} dev examples"
    for name in files:
        runner = OnnxLogits(folder / name)
        diff = max_logit_diff(expected, runner, batches, token)
        if real and task is not None:
            logits = _split_logits(runner, real, batch_size, pad_id)
            diff = max(diff, max(float((logits[k] - torch_logits[k]).abs().max()) for k in real))
            result.metrics[name] = _metrics(task, logits, real)
        result.max_diff[name] = diff
        if name != INT8_FILE and diff > TOLERANCE:
            raise UserError(
                f"export check failed: {name} differs from PyTorch by up to {diff:.3g} "
                f"(limit {TOLERANCE:g}) on {result.checked_on}; nothing was written. "
                "Report this with the model's config.json"
            )
    return result


def _staging_dir(model_dir: Path, out: Path) -> Path:
    """An empty sibling of `out` to build in, so `out` only ever holds a checked export."""
    if out.resolve() == model_dir.resolve():
        raise UserError(f"--output {out} is the model directory; choose a new folder")
    if out.exists() and not (out.is_dir() and (is_export_dir(out) or not any(out.iterdir()))):
        raise UserError(
            f"--output {out} exists and is not an export folder; choose a new folder or remove it"
        )
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)  # a previous export (checked in _staging_dir) or an empty folder
    tmp.rename(out)


def _weights_bytes(model_dir: Path) -> int:
    return sum((model_dir / n).stat().st_size for n in WEIGHTS_FILES if (model_dir / n).is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
