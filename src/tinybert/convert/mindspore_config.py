"""Turn the seed system's YAML configs (MindSpore ModelZoo TinyBERT) into tinybert YAML.

    text = convert_config("td_config/td_config_sst2.yaml")    # a task-distillation config
    text = convert_config("gd_config.yaml")                    # the general-distillation one

The seed's `td_config_*.yaml` (read by run_task_distill.py) and `gd_config.yaml` (read by
run_general_distill.py) become one tinybert config each: epochs, batch sizes, learning rates and
weight decay per phase (TD phase 1 -> `intermediate`, TD phase 2 -> `prediction`, GD ->
`general`), warm-up as the seed's scripts compute it, the sequence length, the student's shape,
checkpoint keeping, task, metric and seed. The output starts with a comment that lists, key by
key, what to check before running (the teacher's shape, checkpoints to convert, data folders),
what was converted, what cannot be expressed exactly here, what has no meaning here and why
(device, data-sink, ModelArts, loss-scale keys, ...), and every key this converter does not
know: no key is dropped silently. The output is checked with load_config's rules before it
is returned.

Only the file's first YAML document is read: the seed's second and third hold help texts and
allowed choices. Flags given to the seed's run_*.sh scripts override its YAML; they are not seen.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tinybert.config import Config, build
from tinybert.errors import UserError

Kind = Literal["td", "gd"]

FIX = "give a seed td_config_*.yaml (task distillation) or gd_config.yaml (general distillation)"
ADAM = "AdamWeightDecay"
OUR_EPS = 1e-6  # tinybert.train.optim.build_optimizer: AdamW's eps, not a config key
SEED_TASKS = "SST-2, QNLI, MNLI, TNEWS or CLUENER"
# td_config_<suffix>.yaml -> our task, where the file name is the only hint (task_name is "").
FILE_TASKS = {"sst2": "sst2", "mnli": "mnli", "qnli": "qnli", "ner": "cluener", "15cls": "tnews"}
SHAPE = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
# The order of the output's top-level keys.
ORDER: tuple[str, ...] = ("task", "teacher", "output_dir", "seed", "corpus", "student", "distill")
ORDER += ("intermediate", "prediction", "general")

MODELARTS = "a ModelArts (Huawei cloud) job setting; tinybert reads local paths"
# Top-level seed keys with no meaning here, and why.
IGNORED: dict[str, str] = {
    **dict.fromkeys(
        (
            "enable_modelarts",
            "data_url",
            "train_url",
            "checkpoint_url",
            "data_path",
            "output_path",
            "load_path",
            "modelarts_dataset_unzip_name",
            "folder_name_under_zip_file",
        ),
        MODELARTS,
    ),
    "device_target": "Ascend/GPU/CPU; here `device` (auto = CUDA when visible) picks it",
    "device_id": "one device by number; here device=cuda:N (or CUDA_VISIBLE_DEVICES)",
    "device_num": "the number of devices; here `torchrun --nproc_per_node N`",
    "distribute": "multi-device switch; here run the same command under torchrun",
    "enable_profiling": "the MindSpore profiler; no equivalent",
    "enable_data_sink": "MindSpore graph-mode data sinking (batches fed on the device); PyTorch "
    "feeds batches from the host, nothing to set",
    "data_sink_steps": "steps per data-sink call; changes only how often the seed's callbacks run",
    "description": "names the seed script the file is for; read to tell TD from GD",
    "ckpt_file": "export.py's input; here `tinybert export --model DIR` on a converted or "
    "trained model directory",
    "file_name": "export.py's output name; `tinybert export` writes DIR/onnx/",
    "file_format": "export.py's AIR/MINDIR/ONNX; `tinybert export` writes ONNX only (no AIR or "
    "MINDIR)",
    "onnx_path": "run_eval_onnx.py's model; here `tinybert evaluate --model DIR` on DIR/onnx "
    "(or --onnx FILE)",
    "result_path": "Ascend 310 inference post-processing; no equivalent",
    "label_path": "Ascend 310 inference post-processing; no equivalent",
    "save_ckpt_path": "the seed's checkpoint folder; here checkpoints go under output_dir",
}
LOSS_SCALE = (
    "loss scaling of the seed's float16 compute on Ascend (its scripts overwrite the value: 2^8 "
    "in TD phase 1, 2^16 in phase 2 and GD, and turn scaling off on GPU/CPU); tinybert trains "
    "in fp32 as written, and precision=fp16 brings its own dynamic scaler"
)
PHASE_IGNORED = dict.fromkeys(("loss_scale_value", "scale_factor", "scale_window"), LOSS_SCALE)
FROM_TEACHER = "a student built here takes it from the teacher's config.json"
NET_IGNORED = {
    "hidden_act": FROM_TEACHER,
    "max_position_embeddings": FROM_TEACHER,
    "type_vocab_size": FROM_TEACHER,
    "vocab_size": FROM_TEACHER,
    "initializer_range": "a randomly built student here uses 0.02",
    "dtype": "MindSpore's input dtype; ids are int64 here",
    "compute_type": "the seed computes in float16 on Ascend (float32 forced on GPU/CPU); here "
    "`precision` per phase: fp32 as written, bf16/fp16 for mixed precision",
}
OWN = "the teacher's own config.json says it"
NO_DROPOUT = "the teacher runs without dropout (eval mode), as in the seed"
TEACHER_IGNORED = {
    **dict.fromkeys(("hidden_act", "max_position_embeddings", "type_vocab_size"), OWN),
    "initializer_range": "the teacher is loaded, not initialised",
    "dtype": NET_IGNORED["dtype"],
    "compute_type": NET_IGNORED["compute_type"],
    **dict.fromkeys(("hidden_dropout_prob", "attention_probs_dropout_prob"), NO_DROPOUT),
}


@dataclass
class Report:
    """What the comment header says. `inexact` and `ignored` hold (what, why) pairs, shown
    grouped by why."""

    checks: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    inexact: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def convert_config(path: str | Path, task: str | None = None) -> str:
    """The tinybert YAML (comment header + keys) for seed config `path`.

    `task` (a tinybert or seed task name) overrides the file's task_name, which the seed's own
    files leave empty (its scripts pass --task_name): then the file name (td_config_sst2.yaml)
    names it. Raises a one-line UserError for a missing file, a file that is not YAML, one that
    is neither a TD nor a GD config, or values that are not valid here.
    """
    path = Path(path)
    doc = read_seed(path)
    kind = seed_kind(doc, path)
    conv = Converter(path, doc)
    if kind == "td":
        conv.task_distill(task)
    else:
        conv.general_distill()
    conv.leftovers()
    conv.validate()
    return conv.render(kind)


def read_seed(path: Path) -> dict[str, Any]:
    """The first YAML document of `path`, which must be a mapping."""
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "not found"
        raise UserError(f"{path}: {state}; {FIX}")
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; {FIX}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise UserError(f"{where}: not valid YAML ({problem}); {FIX}") from None
    if not docs or not isinstance(docs[0], dict):
        raise UserError(f"{path}: not a seed config (no mapping of keys); {FIX}")
    return docs[0]


def seed_kind(doc: dict[str, Any], path: Path) -> Kind:
    """td or gd, from `description` (the seed's own switch) or the sections the file has."""
    description = doc.get("description")
    if description == "task_distill" or "phase1_cfg" in doc or "td_student_net_cfg" in doc:
        return "td"
    if description == "general_distill" or "common_cfg" in doc:
        return "gd"
    if {"task", "student", "intermediate", "general", "include"} & set(doc):
        raise UserError(f"{path}: already a tinybert config, nothing to convert; {FIX}")
    raise UserError(
        f"{path}: neither a seed task-distillation config (phase1_cfg, phase2_cfg, "
        f"td_student_net_cfg) nor a general-distillation one (common_cfg, "
        f"bert_student_net_cfg); {FIX}"
    )


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty mappings are leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def show(value: Any) -> str:
    """A value as the header shows it: strings quoted, numbers as Python prints them."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


class Converter:
    """Reads seed keys (marking each one read), writes tinybert keys, and keeps the report."""

    def __init__(self, path: Path, doc: dict[str, Any]):
        self.path = path
        self.flat = flatten(doc)
        self.used: set[str] = set()
        self.out: dict[str, Any] = {}
        self.origin: dict[str, str] = {}  # our dotted key -> "FILE seed_key", for errors
        self.report = Report()
        self.task = ""

    # -- reading and writing ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        if key in self.flat:
            self.used.add(key)
        return self.flat.get(key)

    def number(self, key: str) -> float | None:
        """A numeric seed value (None when absent); a non-number is an error naming the key."""
        value = self.get(key)
        if value is None:
            return None
        try:
            out = float(value)
        except (TypeError, ValueError):
            out = math.nan
        if isinstance(value, bool) or not math.isfinite(out):
            raise UserError(f"{self.path}: {key}: expected a number, got {show(value)}")
        return out

    def flag(self, key: str) -> bool | None:
        """A seed "true"/"false" switch (strings in the seed's files, or YAML booleans)."""
        value = self.get(key)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return value if isinstance(value, bool) else None

    def put(self, ours: str, value: Any, seed_key: str, note: str = "") -> None:
        """Set our dotted key `ours` and list it as converted from `seed_key`."""
        node = self.out
        *parents, leaf = ours.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        self.origin[ours] = f"{self.path} {seed_key}"
        shown = f"{seed_key}: {show(self.flat[seed_key])}" if seed_key in self.flat else seed_key
        self.report.converted.append(f"{shown} -> {ours}: {show(value)}{note}")

    def copy(self, seed_key: str, ours: str, note: str = "") -> Any:
        """Copy a seed value to our key as it is (validate() checks its type and range)."""
        value = self.get(seed_key)
        if value is not None:
            self.put(ours, value, seed_key, note)
        return value

    def ignore(self, key: str, why: str) -> None:
        if key in self.flat:
            self.used.add(key)
            self.report.ignored.append((f"{key}: {show(self.flat[key])}", why))

    def skip(self, key: str, why: str) -> None:
        """List a key already read (and thereby known) as having no meaning here."""
        self.report.ignored.append((f"{key}: {show(self.flat[key])}", why))

    def differ(self, what: str, why: str) -> None:
        self.report.inexact.append((what, why))

    def check(self, text: str) -> None:
        self.report.checks.append(text)

    # -- task distillation --------------------------------------------------------------------

    def task_distill(self, task: str | None) -> None:
        self.task = self.task_name(task)
        self.put("task.name", self.task, "task_name", self.task_note(task))
        self.td_paths()
        self.put("output_dir", f"runs/{self.path.stem}", "(the file's name)")
        self.copy("seed1", "seed", " (the seed's seed2, for shuffling, is folded into it)")
        self.ignore("seed2", "the seed's dataset-shuffle seed; `seed` orders batches here too")
        self.net("td_", "task.max_seq_length")
        for section, ours, epochs_key in (
            ("phase1_cfg", "intermediate", "td_phase1_epoch_size"),
            ("phase2_cfg", "prediction", "td_phase2_epoch_size"),
        ):
            self.copy(epochs_key, f"{ours}.epochs")
            self.phase(section, f"{section}.optimizer_cfg.{ADAM}", ours)
            self.td_warmup(ours, epochs_key, first=section == "phase1_cfg")
            self.keep_checkpoints(ours)
        self.copy("eval_cfg.batch_size", "prediction.eval_batch_size")
        self.metric()
        self.td_labels()
        self.td_switches()
        self.shuffle()
        self.differ(
            "batches",
            "the seed drops the last partial batch (drop_remainder=True), in training and in "
            "dev scoring; here every example is used and every dev row is scored",
        )

    def task_name(self, given: str | None) -> str:
        from tinybert.data.tasks import get_task

        name = given or str(self.get("task_name") or "")
        if not name:
            suffix = self.path.stem.removeprefix("td_config_").lower()
            name = FILE_TASKS.get(suffix, "")
        if not name:
            raise UserError(
                f"{self.path}: task_name is empty and the file name does not name a task; set "
                f"task_name in the file ({SEED_TASKS}) or give the task (--task)"
            )
        return get_task(name).name

    def task_note(self, given: str | None) -> str:
        in_file = str(self.flat.get("task_name") or "")
        if given:
            return f" (given as --task; the file says {show(in_file)})" if in_file else ""
        return "" if in_file else f" (task_name is empty: from the file name {self.path.name})"

    def td_paths(self) -> None:
        teacher = self.get("load_teacher_ckpt_path") or "<teacher.ckpt>"
        gd = self.get("load_gd_ckpt_path") or "<gd_student.ckpt>"
        self.put("teacher", "", "load_teacher_ckpt_path", " (set it: see 'Before running')")
        self.put("student.init", "checkpoint", "load_gd_ckpt_path", " (set student.path)")
        self.check(
            f"teacher: convert the seed's fine-tuned teacher (`tinybert convert-mindspore "
            f"{teacher} --vocab vocab.txt --task {self.task} --output DIR`), then teacher=DIR"
        )
        self.check(
            f"student.path: the seed's phase 1 always starts from a general-distilled student "
            f"(load_gd_ckpt_path): `tinybert convert-mindspore {gd} --vocab vocab.txt --output "
            "DIR`, then student.path=DIR (or set student.init=auto to start from the teacher's "
            "weights, selected to the shape below, or random)"
        )
        td1 = self.get("load_td1_ckpt_path")
        if td1:
            self.check(
                f"load_td1_ckpt_path {show(td1)} is evaluated alone when do_train is false: "
                f"convert it, then `tinybert evaluate --config THIS.yaml --model DIR`"
            )
        elif td1 is not None:
            self.skip("load_td1_ckpt_path", "none given (read by the seed only without do_train)")
        self.td_data()

    def td_data(self) -> None:
        keys = ("train_data_dir", "eval_data_dir", "schema_dir")
        had = ", ".join(f"{k} {show(self.get(k) or '')}" for k in keys)
        self.dataset_type()
        if self.task == "cluener":
            self.check(
                "task.data_dir: CLUENER's own train.json and dev.json; the seed's NER TFRecords "
                f"(per-token label_ids) are not read as task data here (the seed had {had})"
            )
            return
        self.check(
            "task.data_dir: a folder of the task's files (train.tsv, dev.tsv, ...), or of the "
            "seed's TFRecords: schema.json beside train*.tfrecord and dev*.tfrecord (MNLI: "
            "dev_matched*, dev_mismatched*), label_ids in this task's label order (docs: guide/"
            f"file-formats.md); the seed had {had}"
        )

    def dataset_type(self) -> None:
        kind = self.get("dataset_type")
        if kind is not None and str(kind).lower() == "tfrecord":
            self.skip("dataset_type", "TFRecord folders with schema.json are read as they are")
        elif kind is not None:
            self.check(
                f"dataset_type {show(kind)}: MindRecord is not read here; use the TFRecord "
                "files (with schema.json) or the task's own text files"
            )

    def td_warmup(self, ours: str, epochs_key: str, first: bool) -> None:
        """The seed's warm-up: phase 1 a tenth of ONE epoch, phase 2 10% of all steps."""
        if not first:
            self.put(f"{ours}.warmup_ratio", 0.1, "(run_task_distill.py)", " (10% of the steps)")
            return
        epochs = self.number(epochs_key) or 10.0  # run_task_distill.py's default
        ratio = min(1.0, round(0.1 / epochs, 6)) if epochs > 0 else 0.1
        note = f" (the seed warms up over a tenth of one epoch: 0.1 / {epochs:g} epochs)"
        self.put(f"{ours}.warmup_ratio", ratio, "(run_task_distill.py)", note)

    def keep_checkpoints(self, ours: str) -> None:
        """max_ckpt_num and save_ckpt_step apply to both TD phases."""
        self.copy("max_ckpt_num", f"{ours}.max_checkpoints")
        note = " (run_task_distill.py never reads it: it saves once per epoch)"
        self.copy("save_ckpt_step", f"{ours}.save_steps", note if ours == "intermediate" else "")

    def metric(self) -> None:
        method = self.get("assessment_method")
        if method is None:
            return
        ours, note = metric_for(str(method), self.task)
        if ours:
            self.put("task.metric", ours, "assessment_method", f" ({note})" if note else "")
        elif note:
            self.differ(f"assessment_method: {show(method)}", note)
        else:
            self.report.unknown.append(f"assessment_method: {show(method)} (not accuracy/bf1/mf1)")
        self.differ(
            "best checkpoint",
            "the seed's training keeps the best dev accuracy whatever assessment_method says "
            "(its EvalCallBack); here task.metric picks best/",
        )

    def td_labels(self) -> None:
        from tinybert.data.tasks import get_task

        spec = get_task(self.task)
        seed_type = self.get("task_type")
        our_type = "ner" if spec.kind == "token" else "classification"
        if seed_type == our_type:
            self.skip("task_type", "implied by task.name")
        elif seed_type is not None:
            self.check(
                f"task_type {show(seed_type)} does not fit {self.task}, a {our_type} task (the "
                f"seed refuses the pair unless its script passes --task_type={our_type}); "
                "task.name alone decides here"
            )
        labels = self.get("num_labels")
        if labels == len(spec.labels):
            self.skip("num_labels", f"{self.task} has {labels} classes here too")
        elif labels is not None:
            names = ", ".join(spec.labels[:4]) + (", ..." if len(spec.labels) > 4 else "")
            self.check(
                f"num_labels {show(labels)}: {self.task} has {len(spec.labels)} classes here "
                f"({names}); a seed checkpoint's head with another count does not fit"
            )

    def td_switches(self) -> None:
        train, evaluate = self.flag("do_train"), self.flag("do_eval")
        if train is False:
            self.check(
                "do_train is false (the seed only evaluates load_td1_ckpt_path): run `tinybert "
                "evaluate --config THIS.yaml --model DIR` instead of task-distill"
            )
        elif train:
            self.skip("do_train", "`tinybert task-distill` runs phase 1 then phase 2")
        if evaluate is False and train is not False:
            self.differ(
                "do_eval: false",
                "task-distill here always scores the dev set at each phase-2 epoch end "
                "(keeping best/), where the seed skipped it",
            )
        elif evaluate:
            self.skip("do_eval", "phase 2 scores the dev set at each epoch end, as the seed")

    def shuffle(self) -> None:
        if self.flag("do_shuffle") is not None:
            self.differ(
                f"do_shuffle: {show(self.flat['do_shuffle'])}",
                "training batches are always shuffled here (seeded by `seed`); the seed's "
                "create_tinybert_dataset never shuffles on one device (it resets shuffle when "
                "device_num is 1)",
            )

    # -- general distillation -----------------------------------------------------------------

    def general_distill(self) -> None:
        self.gd_paths()
        self.put("output_dir", f"runs/{self.path.stem}", "(the file's name)")
        self.copy("epoch_size", "general.epochs")
        self.gd_batch()
        self.phase("common_cfg", f"common_cfg.{ADAM}", "general", batch=False)
        self.put("general.warmup_ratio", 0.1, "(run_general_distill.py)", " (10% of the steps)")
        self.copy("save_ckpt_step", "general.save_steps")
        self.copy("max_ckpt_num", "general.max_checkpoints")
        self.net("bert_", "corpus.max_seq_length")
        self.shuffle()
        self.differ(
            "seed",
            "run_general_distill.py fixes set_seed(0); here `seed` (42 unless set) seeds the "
            "student's initialisation and the batch order",
        )
        self.differ(
            "batches",
            "the seed drops the last partial batch (drop_remainder=True); here every sequence "
            "is used",
        )

    def gd_paths(self) -> None:
        teacher = self.get("load_teacher_ckpt_path") or "<bert_base.ckpt>"
        self.put("teacher", "", "load_teacher_ckpt_path", " (set it: see 'Before running')")
        # The seed's GD student starts from random weights; our default selects the teacher's.
        self.out.setdefault("student", {})["init"] = "random"
        self.check(
            "student.init: random, as the seed's GD; delete it to start from a selection of "
            "the teacher's weights instead (student.init=auto, the default)"
        )
        self.check(
            f"teacher: convert the seed's pre-trained BERT-base (`tinybert convert-mindspore "
            f"{teacher} --vocab vocab.txt --output DIR`), then teacher=DIR"
        )
        data, schema = self.get("data_dir") or "", self.get("schema_dir") or ""
        self.dataset_type()
        if data:
            self.put("corpus.path", str(data), "data_dir")
        self.check(
            "corpus.path: the seed's TFRecord folder, with its schema.json inside and the "
            "records named *.tfrecord (or a `tinybert prepare-corpus` folder); the seed had "
            f"data_dir {show(data)}, schema_dir {show(schema)}"
        )

    def gd_batch(self) -> None:
        batch = self.number("common_cfg.batch_size")
        if batch is None:
            return
        devices = int(self.number("device_num") or 1) if self.flag("distribute") else 1
        if devices > 1:
            note = f" (per device x device_num {devices} = the global batch)"
            self.put("general.batch_size", int(batch) * devices, "common_cfg.batch_size", note)
        else:
            self.copy("common_cfg.batch_size", "general.batch_size")
        self.check(
            f"general.batch_size is the global batch here; the seed's batch_size {batch:g} is "
            f"per device, so run_distributed_gd_*.sh on N devices trained with {batch:g} x N "
            "(the paper: 256 = 8 x 32): set general.batch_size to that (with general.grad_accum "
            "on fewer GPUs)"
        )

    # -- shared by TD and GD ------------------------------------------------------------------

    def phase(self, section: str, adam: str, ours: str, batch: bool = True) -> None:
        """Batch size, lr and weight decay of one phase, with notes on schedule and eps."""
        if batch:
            self.copy(f"{section}.batch_size", f"{ours}.batch_size")
        self.copy(f"{adam}.learning_rate", f"{ours}.lr")
        self.copy(f"{adam}.weight_decay", f"{ours}.weight_decay")
        self.schedule(adam)
        self.eps_and_filter(adam)
        for key, why in PHASE_IGNORED.items():
            self.ignore(f"{section}.{key}", why)

    def schedule(self, adam: str) -> None:
        lr = self.number(f"{adam}.learning_rate") or 0.0
        end = self.number(f"{adam}.end_learning_rate")
        power = self.number(f"{adam}.power")
        if end is None and power is None:
            return
        what = ", ".join(
            f"{adam}.{name}: {show(self.flat[f'{adam}.{name}'])}"
            for name in ("end_learning_rate", "power")
            if f"{adam}.{name}" in self.flat
        )
        why = (
            "the seed warms up linearly, then decays polynomially from step 0: (lr - end) * "
            "(1 - t/T)^power + end; here the lr decays linearly from lr at the end of warm-up to 0"
        )
        lost = [] if end is None or end <= lr * 1e-6 else [f"end_learning_rate {end:g} > 0"]
        lost += [] if power in (None, 1.0) else [f"power {power:g}"]
        if lost:
            why += f": {' and '.join(lost)} cannot be expressed here"
        else:
            why += (
                " (the same line, except that the seed's starts at step 0, so right after "
                "warm-up its lr is lr * (1 - warm-up fraction), not lr)"
            )
        self.differ(what, why)

    def eps_and_filter(self, adam: str) -> None:
        eps = self.number(f"{adam}.eps")
        if eps is not None and math.isclose(eps, OUR_EPS, rel_tol=1e-9):
            self.skip(f"{adam}.eps", "AdamW's eps is 1e-6 here too")
        elif eps is not None:
            self.differ(f"{adam}.eps: {eps:g}", "AdamW's eps is fixed at 1e-6 here")
        words = self.get(f"{adam}.decay_filter")
        if isinstance(words, list) and {str(w).lower() for w in words} <= {"layernorm", "bias"}:
            self.skip(f"{adam}.decay_filter", "biases and LayerNorm never decay here either")
        elif words is not None:
            self.differ(
                f"{adam}.decay_filter: {show(words)}",
                "here exactly the biases and LayerNorm weights are not decayed",
            )

    def net(self, prefix: str, seq_key: str) -> None:
        """The student's shape and sequence length; the teacher's shape becomes a check. The
        sections are <prefix>student_net_cfg / <prefix>teacher_net_cfg, or the bare names."""
        student, teacher = (self.section(prefix, who) for who in ("student", "teacher"))
        for name in SHAPE:
            self.copy(student + name, f"student.{name}")
        self.dropout(student)
        where = "`tinybert run`'s prepare-corpus; a TFRecord corpus" if prefix == "bert_" else ""
        where = where or "text data; TFRecord task data"
        self.copy(student + "seq_length", seq_key, f" (for {where} keeps its own length)")
        self.net_leftovers(student, NET_IGNORED)
        self.teacher_check(teacher, student)

    def section(self, prefix: str, who: str) -> str:
        named, bare = f"{prefix}{who}_net_cfg.", f"{who}_net_cfg."
        has = {name: any(k.startswith(name) for k in self.flat) for name in (named, bare)}
        return bare if has[bare] and not has[named] else named

    def dropout(self, student: str) -> None:
        hidden = self.get(student + "hidden_dropout_prob")
        attention = self.get(student + "attention_probs_dropout_prob")
        if hidden is not None:
            self.put("student.dropout", hidden, student + "hidden_dropout_prob")
        elif attention is not None:
            self.put("student.dropout", attention, student + "attention_probs_dropout_prob")
        if hidden is None or attention is None:
            return
        if hidden == attention:
            self.skip(student + "attention_probs_dropout_prob", "the same student.dropout")
        else:
            self.differ(
                f"{student}attention_probs_dropout_prob: {show(attention)}",
                f"one student.dropout for hidden and attention here; {show(hidden)} is used",
            )

    def net_leftovers(self, prefix: str, reasons: dict[str, str]) -> None:
        for name, why in reasons.items():
            self.ignore(prefix + name, why)
        relative = self.get(prefix + "use_relative_positions")
        if relative:
            self.differ(
                f"{prefix}use_relative_positions: true",
                "relative positions are not supported here (absolute position embeddings)",
            )
        elif relative is not None:
            self.skip(prefix + "use_relative_positions", "absolute positions, as here")

    def teacher_check(self, teacher: str, student: str) -> None:
        shape = {n: self.get(teacher + n) for n in (*SHAPE, "vocab_size", "seq_length")}
        self.net_leftovers(teacher, TEACHER_IGNORED)
        if all(v is None for v in shape.values()):
            return
        said = ", ".join(f"{teacher}{k}: {show(v)}" for k, v in shape.items() if v is not None)
        self.check(
            f"the teacher you pass must have {shape['num_hidden_layers']} layers and hidden size "
            f"{shape['hidden_size']} (the seed's {said}; compare its "
            "config.json); the student takes its vocabulary from it"
        )
        self.layer_map(shape["num_hidden_layers"], self.flat.get(student + "num_hidden_layers"))
        student_seq = self.flat.get(student + "seq_length")
        if shape["seq_length"] is not None and student_seq not in (None, shape["seq_length"]):
            self.differ(
                f"{teacher}seq_length: {shape['seq_length']}",
                f"differs from the student's {student_seq}; one length here (the student's)",
            )

    def layer_map(self, teacher_layers: Any, student_layers: Any) -> None:
        """The seed maps student layer i to teacher layer i * floor(N_t / N_s); tinybert's
        default rounds i * N_t / N_s, which differs only when N_s does not divide N_t."""
        if not (isinstance(teacher_layers, int) and isinstance(student_layers, int)):
            return
        if student_layers < 1 or teacher_layers % student_layers == 0:
            return
        if teacher_layers < student_layers:
            return
        step = teacher_layers // student_layers
        layers = [(i + 1) * step for i in range(student_layers)]
        note = f" (the seed's blocks of floor({teacher_layers} / {student_layers}) = {step})"
        self.put("distill.layer_map", layers, "(tinybert_for_gd_td.py)", note)

    def leftovers(self) -> None:
        """Known keys with no meaning here, general differences, then every key not read."""
        for key, why in IGNORED.items():
            self.ignore(key, why)
        self.differ(
            "gradient clipping",
            "the seed clips each gradient tensor to norm 1.0; here max_grad_norm 1.0 clips the "
            "global norm",
        )
        self.differ(
            "intermediate losses",
            "the seed averages its MSE over every position of batches padded to seq_length; "
            "here distill.loss_mode real_tokens (default) averages over real tokens, reference "
            "over every position of batches padded to their longest example",
        )
        for key in sorted(set(self.flat) - self.used):
            self.report.unknown.append(f"{key}: {show(self.flat[key])}")

    # -- output -------------------------------------------------------------------------------

    def validate(self) -> None:
        """The same checks load_config makes, so the output always loads."""
        try:
            build(Config, self.out, prefix="", origin=self.origin)
        except UserError as exc:
            raise UserError(f"{self.path}: its converted value is not valid here: {exc}") from None

    def render(self, kind: Kind) -> str:
        body = {key: self.out[key] for key in ORDER if key in self.out}
        body.update(self.out)  # anything ORDER lacks, last
        text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)
        return header(self.path, kind, self.task, self.report) + text


def metric_for(method: str, task: str) -> tuple[str | None, str]:
    """(our task.metric or None, a note) for the seed's assessment_method on `task`."""
    if method not in ("accuracy", "bf1", "mf1"):
        return None, ""
    token = task == "cluener"
    if method == "bf1":
        what = "token-level binary" if token else "binary"
        own = "entity f1" if token else "accuracy"
        return None, (
            f"{what} F1 (classes 1..n-1 positive) has no equivalent here; task.metric stays "
            f"{task}'s own ({own})"
        )
    note = "micro F1 over one label per row equals accuracy" if method == "mf1" else ""
    if not token:
        return "accuracy", note
    where = (
        "the seed counts every position, padding, [CLS] and [SEP] included; here real tokens. "
        "Entity f1, CLUENER's own measure, is the default without task.metric"
    )
    return "token_accuracy", f"{note}; {where}" if note else where


def header(path: Path, kind: Kind, task: str, report: Report) -> str:
    """The comment block at the top of the output."""
    what = f"task distillation, task {task}" if kind == "td" else "general distillation"
    command, section = (
        ("task-distill", "intermediate") if kind == "td" else ("general-distill", "general")
    )
    scripts = (
        "run_standalone_td.sh passes --td_phase1_epoch_size=10 --td_phase2_epoch_size=3 "
        "--max_ckpt_num=1"
        if kind == "td"
        else "run_standalone_gd.sh passes --epoch_size=3 --save_ckpt_step=100; "
        "run_distributed_gd_ascend.sh its EPOCH_SIZE and --save_ckpt_step=10000"
    )
    intro = [
        f"tinybert config written by `tinybert convert-mindspore-config` from the MindSpore "
        f"TinyBERT config {path} ({what}). Only its first YAML document is read (the others "
        "hold help texts and choices).",
        f"The seed's run_*.sh scripts override the file with their flags ({scripts}): give the "
        f"values you ran with as overrides, e.g. `tinybert {command} --config THIS.yaml "
        f"{section}.epochs=N`.",
    ]
    lines = [line for text in intro for line in wrap(text, "# ", "# ")] + ["#"]
    for title, items in (
        ("Before running", report.checks),
        ("Converted (seed key -> tinybert key)", report.converted),
        ("Not exactly the seed's behaviour", grouped(report.inexact)),
        ("Ignored (no meaning here)", grouped(report.ignored)),
        ("Not converted (unknown to this converter)", report.unknown or ["(none)"]),
    ):
        lines.append(f"# {title}:")
        for item in items:
            lines += wrap(item, "#   - ", "#     ")
        lines.append("#")
    return "\n".join(lines) + "\n"


def grouped(pairs: list[tuple[str, str]]) -> list[str]:
    """(what, why) pairs as "what, what -- why" lines, one per reason, in first-seen order."""
    by_reason: dict[str, list[str]] = {}
    for what, why in pairs:
        by_reason.setdefault(why, []).append(what)
    return [f"{', '.join(whats)} -- {why}" for why, whats in by_reason.items()]


def wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=99,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
