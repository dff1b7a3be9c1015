"""ONNX Runtime CPU kernels that tinybert's sessions leave unfused: each fused op against the ops
it replaces, on the shapes a TinyBERT student serves.

    SkipLayerNormalization(x, skip, gamma, beta)  vs  Add(x, skip) -> LayerNormalization

Both graphs are built here and run with graph optimisations off (so ORT does not fuse the
second into the first). Shape: (batch, tokens, width) = (32, 27, W): a batch of 32 SST-2 dev
sentences (mean 25.2 tokens) at the widths of TinyBERT-4 (312), MiniLM (384) and BERT-base (768).
Prints ms per call, best of 5 repeats of 200 calls each.

    python bench/ort_ops.py
    python bench/ort_ops.py --threads 1 --widths 312
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def layer_norm_graph(width: int, fused: bool) -> bytes:
    """y = LayerNorm(x + skip) over the last axis, as one op or as Add + LayerNormalization."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", width])
    skip = helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["b", "t", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", width])
    gamma = helper.make_tensor("gamma", TensorProto.FLOAT, [width], np.ones(width, np.float32))
    beta = helper.make_tensor("beta", TensorProto.FLOAT, [width], np.zeros(width, np.float32))
    if fused:
        nodes = [
            helper.make_node(
                "SkipLayerNormalization",
                ["x", "skip", "gamma", "beta"],
                ["y"],
                domain="com.microsoft",
                epsilon=1e-12,
            )
        ]
    else:
        nodes = [
            helper.make_node("Add", ["x", "skip"], ["sum"]),
            helper.make_node(
                "LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12
            ),
        ]
    graph = helper.make_graph(nodes, "layer_norm", [x, skip], [y], [gamma, beta])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ms_per_call(model: bytes, feeds: dict[str, np.ndarray], threads: int) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(20):
        session.run(None, feeds)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            session.run(None, feeds)
        best = min(best, (time.perf_counter() - start) / 200)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[312, 384, 768])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=27)
    parser.add_argument("--threads", type=int, default=0, help="0: ORT's default")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}; shape ({args.batch}, {args.tokens}, W)")
    print("| width | SkipLayerNormalization ms | Add + LayerNormalization ms | ratio |")
    print("|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for width in args.widths:
        shape = (args.batch, args.tokens, width)
        feeds = {n: rng.standard_normal(shape, dtype=np.float32) for n in ("x", "skip")}
        fused = ms_per_call(layer_norm_graph(width, True), feeds, args.threads)
        plain = ms_per_call(layer_norm_graph(width, False), feeds, args.threads)
        print(f"| {width} | {fused:.3f} | {plain:.3f} | {fused / plain:.1f}x |")


if __name__ == "__main__":
    main()
