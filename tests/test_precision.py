"""`precision: auto`: bf16 where this machine runs it faster, measured once and cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tinybert.config import load_run_config
from tinybert.train import precision
from tinybert.train.precision import resolve_precision

CPU = torch.device("cpu")


@pytest.fixture
def probe(monkeypatch, tmp_path) -> dict:
    """The matmul probe replaced by a counter returning `probe["speedup"]`; the cache in
    tmp_path/cache, and HOME moved so that a stray write to ~/.cache would be seen."""
    state = {"calls": 0, "speedup": 2.0}

    def fake(*args, **kwargs) -> float:
        state["calls"] += 1
        return state["speedup"]

    monkeypatch.setattr(precision, "bf16_matmul_speedup", fake)
    monkeypatch.setenv("TINYBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return state


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "bf16_probe.json"


def test_auto_measures_once_and_caches(probe, tmp_path):
    assert resolve_precision("auto", CPU) == "bf16"
    assert probe["calls"] == 1
    assert list(json.loads(cache_file(tmp_path).read_text()).values()) == [True]
    probe["speedup"] = 0.1  # a second call believes the cache, it does not measure again
    assert resolve_precision("auto", CPU) == "bf16"
    assert probe["calls"] == 1
    assert not (tmp_path / "home").exists()


def test_slow_bf16_resolves_to_fp32(probe):
    probe["speedup"] = 0.1  # an AVX2-only CPU emulates bf16
    assert resolve_precision("auto", CPU) == "fp32"
    probe["speedup"] = 1.1  # barely faster is not worth bf16's rounding
    assert resolve_precision("auto", CPU) == "fp32"  # cached: still the first answer
    assert probe["calls"] == 1


def test_cache_folder_follows_tinybert_cache(probe, tmp_path, monkeypatch):
    assert resolve_precision("auto", CPU) == "bf16"
    other = tmp_path / "other"
    monkeypatch.setenv("TINYBERT_CACHE", str(other))  # read at each call, not at import
    probe["speedup"] = 0.1
    assert resolve_precision("auto", CPU) == "fp32"
    assert probe["calls"] == 2
    assert (other / "bf16_probe.json").is_file() and cache_file(tmp_path).is_file()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b"null", b""],
)
def test_corrupt_cache_is_measured_again_and_rewritten(probe, tmp_path, content):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert resolve_precision("auto", CPU) == "bf16"
    assert probe["calls"] == 1
    assert list(json.loads(path.read_text()).values()) == [True]


def test_corrupt_entry_and_unwritable_cache(probe, tmp_path):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    assert resolve_precision("auto", CPU) == "bf16"
    key = next(iter(json.loads(path.read_text())))
    path.write_text(json.dumps({key: "yes", "other-machine": False}))
    probe["speedup"] = 0.1
    assert resolve_precision("auto", CPU) == "fp32"  # "yes" is no answer: measured again
    assert json.loads(path.read_text()) == {key: False, "other-machine": False}
    path.unlink()
    path.mkdir()  # the cache file cannot be read or written: measure, and go on
    assert resolve_precision("auto", CPU) == "fp32"
    assert probe["calls"] == 3


def test_other_devices_and_explicit_precisions(probe, monkeypatch):
    for value in ("fp32", "bf16", "fp16"):
        assert resolve_precision(value, CPU) == value
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert probe["calls"] == 0  # only a CPU is measured


def test_real_probe_on_this_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYBERT_CACHE", str(tmp_path))
    assert precision.bf16_matmul_speedup(size=256, repeats=2) > 0
    assert resolve_precision("auto", CPU) in ("fp32", "bf16")
    assert (tmp_path / "bf16_probe.json").is_file()


def test_configs_accept_auto(tmp_path):
    cfg = load_run_config([], ["finetune.precision=auto", "general.precision=auto"])
    assert cfg.finetune.precision == "auto" and cfg.general.precision == "auto"
