"""tinybert.export: ONNX export (onnx.py) and ONNX Runtime inference (runtime.py).

    from tinybert.export.onnx import export_model
    from tinybert.export.runtime import OnnxLogits, find_onnx

runtime.py imports neither torch nor onnx, so a server that only runs exported models can use it
alone; this package file imports nothing for the same reason.
"""
