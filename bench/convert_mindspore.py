"""`tinybert convert-mindspore` on a BERT-base-sized seed checkpoint: time and peak memory.

The seed's TD classification checkpoint layout (names and shapes taken from the committed tiny
fixture, tests/fixtures/mindspore/td_cls.ckpt, scaled to 12 layers, hidden 768, FFN 3072,
vocabulary 30522, 512 positions), plus AdamWeightDecay state (adam_m.*, adam_v.*) as a
training checkpoint holds it, written in MindSpore's protobuf format with random weights.

    python bench/convert_mindspore.py   # file size; the conversion's seconds and peak memory
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "mindspore"
SIZES = {32: 768, 64: 3072, 100: 30522}  # tiny fixture dimension -> BERT-base's
LAYERS = 12


def base_entries(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The fixture's tensors at BERT-base size; layer 0's tensors stand for every layer."""
    from tinybert.convert.ms_checkpoint import read_checkpoint

    tiny = read_checkpoint(FIXTURE / "td_cls.ckpt")
    out: dict[str, np.ndarray] = {}
    for tag, array in tiny.items():
        if ".layers.1." in tag:
            continue
        shape = [512 if (d == 64 and "position" in tag) else SIZES.get(d, d) for d in array.shape]
        layer_tags = [re.sub(r"\.layers\.0\.", f".layers.{i}.", tag) for i in range(LAYERS)]
        for t in dict.fromkeys(layer_tags):
            out[t] = rng.normal(0, 0.02, shape).astype(np.float32)
    return out


def write(path: Path, entries: dict[str, np.ndarray]) -> None:
    from tinybert.convert.ms_checkpoint import _checkpoint_class

    ckpt = _checkpoint_class()()
    for tag, array in entries.items():
        value = ckpt.value.add(tag=tag)
        value.tensor.dims.extend(array.shape)
        value.tensor.tensor_type = "Float32"
        value.tensor.tensor_content = array.tobytes()
    path.write_bytes(ckpt.SerializeToString())


CHILD = """
import sys, time
from tinybert.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - t0
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(f"converted in {seconds:.1f} s; peak memory {int(hwm) / 1024:.0f} MiB (VmHWM)")
sys.exit(code)
"""


def main() -> int:
    """Write the checkpoint here, convert it in a fresh process (its own peak memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, vocab = Path(tmp) / "td_base.ckpt", Path(tmp) / "vocab.txt"
        model = base_entries(np.random.default_rng(0))
        moments = {f"adam_{m}.{t}": np.zeros_like(a) for t, a in model.items() for m in "mv"}
        write(ckpt, model | moments)
        del model, moments
        words = [f"w{i}" for i in range(30522 - 5)]
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
        print(f"checkpoint {ckpt.stat().st_size / 1e9:.2f} GB (model + adam_m/adam_v)", flush=True)
        args = ["convert-mindspore", str(ckpt), f"--vocab={vocab}", "--labels=0,1"]
        args.append(f"--output={Path(tmp) / 'out'}")
        return subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
