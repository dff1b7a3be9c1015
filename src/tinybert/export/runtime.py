"""ONNX Runtime inference for exported models: one session as a "logits function".

    run = OnnxLogits(find_onnx("runs/sst2/onnx", precision="int8"))
    logits = run(batch)  # input_ids, attention_mask, token_type_ids (B, T) int64 -> (B, C) float32

A graph without a token_type_ids input (a model with one segment, type_vocab_size 1, or an
optimised graph that dropped it) is fed only the inputs it has.

OnnxLogits fits tinybert.train.inference's LogitsFn, so predict_logits / evaluate_splits run an exported
model through the same batching and metrics as a PyTorch one. This module does not import torch:
a server that only runs ONNX needs onnxruntime and numpy alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tinybert.errors import UserError

FP32_FILE = "model.onnx"
OPTIMIZED_FILE = "model_optimized.onnx"
INT8_FILE = "model_int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
# ONNX Runtime fusions left out at load time because the fused kernel is slower than the ops it
# replaces. SkipLayerNormalization (residual add + LayerNorm in one op) took 6-7x as long as Add
# + LayerNormalization on ORT 1.31's CPU kernels: 0.72 vs 0.11 ms at (32, 27, 312), 1.83 vs 0.28
# ms at 768 wide (bench/ort_ops.py; BENCHMARKS.md, serving); the int8 student ran up to 1.1x
# faster without it.
SLOW_FUSIONS = ("SkipLayerNormFusion",)


EXPORT_SUBDIR = "onnx"  # `tinybert export --model DIR` writes DIR/onnx by default


def is_export_dir(path: str | Path) -> bool:
    """True if `path` is a folder written by `tinybert export` (it holds model.onnx)."""
    return (Path(path) / FP32_FILE).is_file()


def export_dir(path: str | Path) -> Path | None:
    """The export folder `path` names: itself, or the default `path/onnx` that `tinybert
    export --model path` wrote; None if neither holds model.onnx."""
    for folder in (Path(path), Path(path) / EXPORT_SUBDIR):
        if is_export_dir(folder):
            return folder
    return None


def find_onnx(model_dir: str | Path, precision: str = "fp32", onnx_file: str | None = None) -> Path:
    """The ONNX file to run: `onnx_file` if given; else, in the export folder `model_dir`,
    model_int8.onnx for int8, and for fp32 the optimised graph when there is one."""
    if onnx_file:
        path = Path(onnx_file)
        if not path.is_file():
            raise UserError(f"{path}: ONNX file not found")
        return path
    found = export_dir(model_dir)
    if found is None:
        raise UserError(
            f"{model_dir}: no {FP32_FILE} (nor {EXPORT_SUBDIR}/{FP32_FILE}); make an export with "
            f"`tinybert export --model {model_dir}`, or pass --onnx FILE"
        )
    folder = found
    if precision == "int8":
        if not (folder / INT8_FILE).is_file():
            raise UserError(
                f"{folder}: no {INT8_FILE}; export again with --int8 to make the quantised model"
            )
        return folder / INT8_FILE
    if precision != "fp32":
        raise UserError(f"ONNX Runtime runs fp32 or int8 models, not {precision}")
    optimized = folder / OPTIMIZED_FILE
    return optimized if optimized.is_file() else folder / FP32_FILE


class OnnxLogits:
    """An ONNX Runtime CPU session over an exported model, called like a model's forward.

    threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort  # here, so importing this module stays cheap

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: no warnings about unused initialisers
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(SLOW_FUSIONS),
            )
        except Exception as e:  # ORT raises its own exception types for unreadable graphs
            raise UserError(f"{self.path}: not a loadable ONNX model ({e})") from None
        # An optimised graph may drop an input it does not use (e.g. token_type_ids).
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = [n for n in self.inputs if n not in INPUT_NAMES]
        outputs = [o.name for o in self.session.get_outputs()]
        if unknown or OUTPUT_NAME not in outputs:
            raise UserError(
                f"{self.path}: not a tinybert export (inputs {self.inputs}, outputs {outputs}); "
                f"expected inputs {list(INPUT_NAMES)} and output '{OUTPUT_NAME}'"
            )

    def __call__(self, batch: Mapping[str, object]) -> np.ndarray:
        """batch: input_ids, attention_mask, token_type_ids, each (B, T) int64 (tensors or
        arrays; token_type_ids only read by a graph that has it). Returns the logits, (B, C)
        float32 ((B, T, C) for a token head)."""
        feeds = {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
        try:
            return self.session.run([OUTPUT_NAME], feeds)[0]
        except Exception as e:  # e.g. a sequence longer than the position table
            shape = tuple(feeds[self.inputs[0]].shape)
            raise UserError(f"{self.path}: ONNX Runtime failed on a {shape} batch ({e})") from None
