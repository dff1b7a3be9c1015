"""`precision: auto`, every stage's default: bf16 where the CPU says it is fast at it (flags),
a timing probe only where it says nothing, and only a clear probe answer cached.

No test here depends on this machine's CPU: the flag reader, torch's capability and the probe
are replaced (one test runs the real probe's matmuls on a clock of its own)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import pytest
import torch
import yaml

from tinybert.cli import build_parser, main
from tinybert.config import AugmentConfig, Config, TrainConfig, load_config
from tinybert.errors import UserError
from tinybert.evaluate import run_evaluate
from tinybert.export.backend import serving_precision
from tinybert.predict import Predictor
from tinybert.report import build_report
from tinybert.train import precision
from tinybert.train.precision import explain_precision, judge_probe, resolve_precision

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]
FAST, SLOW = (0.3, 0.1), (0.1, 1.0)  # (fp32 s, bf16 s) of one probe round: 3x, 0.1x


@pytest.fixture
def cpu(monkeypatch) -> dict:
    """A CPU described by `cpu["flags"]` (None: unreadable), `cpu["machine"]` and
    `cpu["capability"]`; auto not pinned (conftest pins it to fp32 for the other tests)."""
    state: dict = {"flags": None, "machine": "aarch64", "capability": "DEFAULT"}
    monkeypatch.delenv(precision.PIN_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: state["flags"])
    monkeypatch.setattr(precision.platform, "machine", lambda: state["machine"])
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: state["capability"])
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    return state


@pytest.fixture
def probe(cpu, monkeypatch, tmp_path) -> dict:
    """An ARM CPU (no flags: auto must measure), the probe replaced by a counter returning
    `probe["times"]`; the cache in tmp_path/cache, HOME moved so that a stray write to ~/.cache
    would be seen, and a fresh process (no unclear answer remembered)."""
    state = {"calls": 0, "times": [FAST] * 3}

    def fake(*args, **kwargs) -> list[tuple[float, float]]:
        state["calls"] += 1
        return state["times"]

    monkeypatch.setattr(precision, "bf16_probe_times", fake)
    monkeypatch.setattr(precision, "_THIS_PROCESS", {})
    monkeypatch.setenv("TINYBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return state


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "bf16_probe.json"


def new_process(monkeypatch) -> None:
    """What a later command starts with: no unclear probe answer remembered."""
    monkeypatch.setattr(precision, "_THIS_PROCESS", {})


# --------------------------------------------------------------------------- what the CPU says


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, ("bf16", "amx_bf16")),
        ({"avx2", "avx512f", "avx512_bf16"}, ("bf16", "avx512_bf16")),  # Zen 4, Cooper Lake
        ({"avx2", "avx512f", "avx512bw"}, ("fp32", "no avx512_bf16")),  # Skylake-X: emulated
        ({"sse4_2", "avx2", "fma"}, ("fp32", "no avx512_bf16")),  # AVX2 only: ~10x slower
    ],
)
def test_cpu_flags_decide_without_measuring(probe, cpu, flags, expected):
    cpu.update(flags=flags, machine="x86_64", capability="AVX512")
    value, why = explain_precision("auto", CPU)
    assert value == expected[0] and expected[1] in why
    assert probe["calls"] == 0


def test_flags_are_read_from_proc_cpuinfo_on_x86_only(monkeypatch):
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    assert precision.cpu_flags() is None  # an ARM's "Features" say nothing of bf16 speed
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    flags = precision.cpu_flags()
    assert flags is None or isinstance(flags, set)  # a set on Linux, None elsewhere


@pytest.mark.parametrize("machine, capability", [("aarch64", "DEFAULT"), ("x86_64", "AVX512")])
def test_unknown_cpu_is_measured(probe, cpu, machine, capability):
    cpu.update(machine=machine, capability=capability)  # no flags readable
    assert explain_precision("auto", CPU) == ("bf16", "measured bf16 3.00x fp32")
    assert probe["calls"] == 1


def test_x86_without_flags_and_without_avx512_is_fp32(probe, cpu):
    cpu.update(machine="x86_64", capability="AVX2")
    assert explain_precision("auto", CPU) == (
        "fp32",
        "the CPU has no AVX-512 (torch capability AVX2 or less)",
    )
    assert probe["calls"] == 0


def test_torch_without_onednn_is_measured(probe, cpu, monkeypatch):
    cpu.update(flags={"avx512_bf16"}, machine="x86_64")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    probe["times"] = [SLOW] * 3
    assert resolve_precision("auto", CPU) == "fp32"
    assert probe["calls"] == 1


def test_pinned_auto(cpu, monkeypatch):
    cpu.update(flags={"avx512_bf16"}, machine="x86_64")
    monkeypatch.setenv(precision.PIN_ENV, "fp32")
    assert explain_precision("auto", CPU) == ("fp32", f"set by ${precision.PIN_ENV}")
    assert resolve_precision("bf16", CPU) == "bf16"  # a pin changes auto only
    monkeypatch.setenv(precision.PIN_ENV, "fp16")
    with pytest.raises(UserError, match="TINYBERT_AUTO_PRECISION='fp16': set it to fp32 or bf16"):
        resolve_precision("auto", CPU)


# --------------------------------------------------------------------------- the probe


def test_judge_probe_takes_the_best_of_interleaved_rounds():
    assert judge_probe([FAST] * 3) == (True, True, pytest.approx(3.0))
    assert judge_probe([SLOW] * 3) == (False, True, pytest.approx(0.1))
    # A busy round (fp32 slowed down, then bf16) counts neither way: the best times decide.
    faster, clear, best = judge_probe([(0.3, 0.1), (0.9, 0.1), (0.3, 0.4)])
    assert (faster, clear, best) == (True, False, pytest.approx(3.0))
    assert judge_probe([(0.11, 0.1)] * 3)[:2] == (False, False)  # 1.1x: not worth bf16


def test_clear_answer_is_measured_once_and_cached(probe, tmp_path, monkeypatch):
    value, why = explain_precision("auto", CPU)
    assert (value, why) == ("bf16", "measured bf16 3.00x fp32")
    assert list(json.loads(cache_file(tmp_path).read_text()).values()) == [True]
    new_process(monkeypatch)
    probe["times"] = [SLOW] * 3  # a later command believes the cache, it does not measure again
    assert explain_precision("auto", CPU) == (
        "bf16",
        f"measured earlier, cached in {cache_file(tmp_path)}",
    )
    assert probe["calls"] == 1
    assert not (tmp_path / "home").exists()


def test_clearly_slow_bf16_is_cached_as_fp32(probe, tmp_path, monkeypatch):
    probe["times"] = [SLOW] * 3  # an emulated bf16
    assert resolve_precision("auto", CPU) == "fp32"
    new_process(monkeypatch)
    probe["times"] = [FAST] * 3
    assert resolve_precision("auto", CPU) == "fp32"  # cached: still the first answer
    assert probe["calls"] == 1


@pytest.mark.parametrize(
    "busy",
    [
        [(0.3, 0.1), (0.3, 0.35), (0.3, 0.1)],  # one busy round: bf16 for this run only
        [(0.11, 0.1), (0.1, 0.1), (0.12, 0.1)],  # 1.0-1.2x: fp32 for this run only
        [(0.3, 0.1), (0.1, 0.3), (0.2, 0.2)],  # the rounds disagree
    ],
)
def test_busy_probe_is_not_cached(probe, tmp_path, monkeypatch, busy):
    probe["times"] = busy
    faster = judge_probe(busy)[0]
    value, why = explain_precision("auto", CPU)
    assert value == ("bf16" if faster else "fp32") and "unclear" in why and "not cached" in why
    assert not cache_file(tmp_path).exists()
    # The same process keeps its answer (phase 2's teacher logits and training agree) ...
    probe["times"] = [SLOW] * 3
    assert resolve_precision("auto", CPU) == value and probe["calls"] == 1
    # ... the next command measures again, and a clear answer then settles it.
    new_process(monkeypatch)
    assert resolve_precision("auto", CPU) == "fp32" and probe["calls"] == 2
    new_process(monkeypatch)
    probe["times"] = busy
    assert resolve_precision("auto", CPU) == "fp32" and probe["calls"] == 2  # cached now
    assert list(json.loads(cache_file(tmp_path).read_text()).values()) == [False]


def test_cache_folder_follows_tinybert_cache(probe, tmp_path, monkeypatch):
    assert resolve_precision("auto", CPU) == "bf16"
    other = tmp_path / "other"
    monkeypatch.setenv("TINYBERT_CACHE", str(other))  # read at each call, not at import
    probe["times"] = [SLOW] * 3
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


def test_corrupt_entry_and_unwritable_cache(probe, tmp_path, monkeypatch):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    assert resolve_precision("auto", CPU) == "bf16"
    key = next(iter(json.loads(path.read_text())))
    path.write_text(json.dumps({key: "yes", "other-machine": False}))
    probe["times"] = [SLOW] * 3
    assert resolve_precision("auto", CPU) == "fp32"  # "yes" is no answer: measured again
    assert json.loads(path.read_text()) == {key: False, "other-machine": False}
    path.unlink()
    path.mkdir()  # the cache file cannot be read or written: measure, and go on
    assert resolve_precision("auto", CPU) == "fp32"
    assert probe["calls"] == 3


def test_other_devices_and_explicit_precisions(probe, monkeypatch):
    for value in ("fp32", "bf16", "fp16"):
        assert explain_precision(value, CPU) == (value, "")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # never fp16 unasked
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert probe["calls"] == 0  # only a CPU is measured


def test_real_probe_times_each_precision_back_to_back(monkeypatch):
    """The real probe's matmuls run (fp32 then bf16, `repeats` each, per round, after one
    warm-up of each) on a clock that only they move: fp32 costs 1 s, bf16 3 s. Each round then
    reads exactly (repeats x 1 s, repeats x 3 s), and judge_probe calls bf16 clearly slower."""
    clock = {"now": 0.0}
    cost = {torch.float32: 1.0, torch.bfloat16: 3.0}
    seen: list[torch.dtype] = []
    real_matmul = torch.Tensor.__matmul__

    def timed_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append(a.dtype)
        clock["now"] += cost[a.dtype]
        return real_matmul(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", timed_matmul)
    monkeypatch.setattr(precision.time, "perf_counter", lambda: clock["now"])
    times = precision.bf16_probe_times(rounds=2, size=64, repeats=2)
    assert times == [(2.0, 6.0), (2.0, 6.0)]
    fp32, bf16 = torch.float32, torch.bfloat16
    assert seen == [fp32, bf16] + [fp32, fp32, bf16, bf16] * 2
    assert judge_probe(times) == (False, True, pytest.approx(1 / 3))


# --------------------------------------------------------------------------- auto everywhere


def _precision_fields(cls: type, prefix: str = "") -> dict[str, object]:
    """Every `precision` default in the Config tree, by dotted key."""
    found: dict[str, object] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "precision":
            found[prefix + f.name] = f.default
        elif dataclasses.is_dataclass(hints[f.name]):
            found.update(_precision_fields(hints[f.name], f"{prefix}{f.name}."))
    return found


def test_every_default_is_auto():
    defaults = _precision_fields(Config)
    assert set(defaults) >= {
        "finetune.precision",
        "intermediate.precision",
        "prediction.precision",
        "general.precision",
        "augment.precision",
    }
    assert set(defaults.values()) == {"auto"}
    assert TrainConfig().precision == "auto" and AugmentConfig().precision == "auto"
    parser = build_parser()
    for command in ("evaluate", "predict"):
        assert parser.parse_args([command, "--model=m"]).precision == "auto"
    for fn in (run_evaluate, Predictor.__init__):
        assert inspect.signature(fn).parameters["precision"].default == "auto"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_says_auto(path):
    cfg = load_config([str(path)], [])
    sections = ("finetune", "intermediate", "prediction", "general")
    assert [getattr(cfg, s).precision for s in sections] == ["auto"] * 4
    assert cfg.augment.precision == "auto"


def test_serving_precision(probe, cpu):
    cpu.update(flags={"avx512_bf16"}, machine="x86_64")
    assert serving_precision("torch", "auto", CPU) == "bf16"
    assert serving_precision("onnx", "auto", CPU) == "fp32"  # int8 only when asked
    assert serving_precision("onnx", "int8", CPU) == "int8"
    with pytest.raises(UserError, match="--precision int8 is not available with the torch"):
        serving_precision("torch", "int8", CPU)


# --------------------------------------------------------------------------- where it is shown


def test_stages_show_the_resolved_precision(tmp_path, tiny_bert_dir, sst2_dir, capsys, monkeypatch):
    """bf16 chosen by auto shows as such in each stage's start line, metrics.jsonl, eval
    results, the model cards and the run report; config.yaml keeps what the user asked."""
    monkeypatch.setenv(precision.PIN_ENV, "bf16")  # what auto says on an AVX512-BF16 CPU
    out = tmp_path / "out"
    args = [
        f"model={tiny_bert_dir}",
        f"teacher={out / 'teacher/best'}",
        f"output_dir={out}",
        f"task.data_dir={sst2_dir}",
        "task.max_seq_length=16",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "finetune.max_steps=2",
        "intermediate.max_steps=2",
        "prediction.max_steps=2",
        "prediction.precision=fp32",  # asked for: shown without "(auto)"
    ]
    assert main(["finetune", *args]) == 0
    assert main(["task-distill", *args]) == 0
    printed = capsys.readouterr()
    banners = [line for line in (printed.out + printed.err).splitlines() if ": precision " in line]
    assert banners == [
        "finetune: precision bf16 (auto): set by $TINYBERT_AUTO_PRECISION",
        "distill phase 1 (intermediate): precision bf16 (auto): set by $TINYBERT_AUTO_PRECISION",
        "distill phase 2 (prediction): precision fp32",
    ]
    for stage, expected in (
        ("teacher", "bf16"),
        ("student/intermediate", "bf16"),
        ("student/prediction", "fp32"),
    ):
        rows = [json.loads(x) for x in (out / stage / "metrics.jsonl").read_text().splitlines()]
        trained = [r for r in rows if "loss" in r or r.get("done")]
        assert trained and {r["precision"] for r in trained} == {expected}
    saved = yaml.safe_load((out / "teacher/config.yaml").read_text())
    assert saved["finetune"]["precision"] == "auto"  # the user's value, not the resolved one

    result = tmp_path / "eval.json"
    student = out / "student/prediction/best"
    assert main(["evaluate", *args, f"--model={student}", f"--output={result}"]) == 0
    assert json.loads(result.read_text())["precision"] == "bf16"  # torch, auto

    teacher_card = (out / "teacher/best/README.md").read_text()
    assert "precision bf16 (auto)" in teacher_card and "precision auto" not in teacher_card
    card = (student / "README.md").read_text()
    assert "Phase 1 (`intermediate`): max_steps 2" in card
    phases = [line for line in card.splitlines() if line.startswith("- Phase") and "lr " in line]
    assert [line.split("precision ")[1].split(",")[0] for line in phases] == ["bf16 (auto)", "fp32"]

    report = build_report(out).md.read_text()
    assert (
        "Precision: finetune (teacher) bf16 (auto); task distillation phase 1 bf16 (auto); "
        "task distillation phase 2 fp32." in report
    )
