"""The stages of `tinybert run`: where each reads and writes, and how it runs.

`Wiring` places every stage's output where the next one reads it:

    prepare-corpus   corpus.inputs            -> corpus.path (default <output_dir>/corpus)
    general-distill  run.general_teacher or model, the corpus -> <output_dir>/general/final
    finetune         model, the task          -> <output_dir>/teacher/best (the teacher)
    augment          the task's train split   -> <output_dir>/augmented/<train file>
    task-distill     the teacher (+ GD student, + augmented file) -> <output_dir>/student/...
    evaluate         teacher and student      -> <model>/eval_results.json
    export           teacher and student      -> <model>/onnx (fp32, optimised, int8)
    benchmark        teacher and student      -> <model>/speed.json
    report           the run directory        -> <output_dir>/report

A stage's wiring is a list of config overrides (teacher=..., student.path=...), so the command
that reproduces a stage alone is the run's own command line plus those overrides.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tinybert.config import RunConfig, load_run_config, to_dict
from tinybert.data.task_data import train_file_name, train_path
from tinybert.errors import UserError
from tinybert.evaluate import RESULTS_FILE, RESULTS_FORMAT
from tinybert.export.onnx import REPORT_FILE
from tinybert.export.runtime import EXPORT_SUBDIR
from tinybert.recipes.common import stage_settings
from tinybert.speed import SPEED_FILE
from tinybert.train.checkpoint import STATE_FILE

TRAINING = ("general-distill", "finetune", "task-distill")


@dataclass(frozen=True)
class Wiring:
    """Where one run's stages read and write."""

    out: Path
    base: str  # `model`: the pre-trained BERT finetune starts from ("" if none)
    gd_teacher: str  # general distillation's teacher
    corpus: str  # the packed corpus folder
    teacher: str  # the task teacher
    general: str  # the general-distilled student
    augmented: str  # augment's output file
    student: str  # the deployable student (TD phase 2's best/)

    @classmethod
    def of(cls, cfg: RunConfig) -> Wiring:
        out = Path(cfg.output_dir)
        stages = cfg.run.stages
        augmented = cfg.augment.output
        if not augmented and (cfg.task.train_file or cfg.task.data_dir):
            augmented = str(out / "augmented" / train_file_name(cfg.task))
        return cls(
            out=out,
            base=cfg.model,
            gd_teacher=cfg.run.general_teacher or cfg.model,
            corpus=cfg.corpus.path or str(out / "corpus"),
            teacher=str(out / "teacher" / "best") if "finetune" in stages else cfg.teacher,
            general=str(out / "general" / "final"),
            augmented=augmented,
            student=str(out / "student" / "prediction" / "best"),
        )

    def models(self) -> dict[str, str | None]:
        """run.json's "models": the roles a report and the model cards look up."""
        return {
            "base": self.base,
            "teacher": self.teacher,
            "general": self.general if Path(self.general).is_dir() else None,
            "student": self.student,
        }


@dataclass
class Stage:
    """One planned stage of a run."""

    name: str
    reads: list[str]
    writes: list[str]
    overrides: list[str]  # the wiring, as config overrides on top of the run's own
    commands: list[str]  # each reproduces (a part of) the stage alone
    # Non-training stages: what they write, per model, and the settings it was made with; the
    # stage is skipped when every output is newer than its input and the settings are the same.
    outputs: dict[str, str] = field(default_factory=dict)  # output file -> input it derives from
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.name in TRAINING


@dataclass(frozen=True)
class CommandLine:
    """The run's own config files and overrides, to spell each stage's command."""

    configs: tuple[str, ...]
    overrides: tuple[str, ...]

    def command(self, name: str, wired: Sequence[str], *extra: str) -> str:
        files = [a for path in self.configs for a in ("--config", path)]
        # run.* only steers `tinybert run`; the stage's own command ignores it
        own = [o for o in self.overrides if not o.strip().startswith("run.")]
        return shlex.join(["tinybert", name, *files, *own, *wired, *extra])


Planner = Callable[[RunConfig, Wiring, CommandLine], Stage]


def plan(cfg: RunConfig, configs: Sequence[str], overrides: Sequence[str]) -> list[Stage]:
    """The stages `run.stages` lists, wired; refuses a run that cannot work before any work."""
    w = Wiring.of(cfg)
    _check(cfg, w)
    line = CommandLine(tuple(configs), tuple(overrides))
    return [_STAGES[name](cfg, w, line) for name in cfg.run.stages]


def stage_config(configs: Sequence[str], overrides: Sequence[str], stage: Stage) -> RunConfig:
    """The configuration one stage runs with: the run's, plus its wiring."""
    return load_run_config(configs, [*overrides, *stage.overrides])


def _check(cfg: RunConfig, w: Wiring) -> None:
    stages = cfg.run.stages
    key = "run.stages"
    if "prepare-corpus" in stages and not cfg.corpus.inputs:
        raise UserError(f"{key} has prepare-corpus: give corpus.inputs=[raw text files or globs]")
    if {"prepare-corpus", "general-distill"} & set(stages) and not w.gd_teacher:
        raise UserError(
            f"{key} has general distillation: give model= (or run.general_teacher=) the "
            "pre-trained BERT directory that teaches it"
        )
    if "general-distill" in stages and "prepare-corpus" not in stages and not cfg.corpus.path:
        raise UserError(
            f"{key} has general-distill without prepare-corpus: give corpus.path=<a folder made "
            "by tinybert prepare-corpus>, or add prepare-corpus with corpus.inputs"
        )
    # With general-distill, student.init is GD's start (auto, select or random): TD starts
    # from GD's student, so a start only TD could use is a conflict.
    gd_starts = ("auto", "select", "random")
    if {"general-distill", "task-distill"} <= set(stages) and cfg.student.init not in gd_starts:
        raise UserError(
            f"{key} has general-distill, whose student task-distill starts from; "
            f"student.init={cfg.student.init} asks for another start: remove one of them"
        )
    if "finetune" in stages and not cfg.model:
        raise UserError(f"{key} has finetune: give model=<Hugging Face BERT directory>")
    needs_teacher = {"augment", "task-distill", "evaluate", "export", "benchmark"} & set(stages)
    if needs_teacher and not w.teacher:
        raise UserError(
            f"{key} has {sorted(needs_teacher)[0]} without finetune: give teacher=<a fine-tuned "
            "BERT directory>, or add finetune with model=<BERT directory>"
        )
    deploys = {"evaluate", "export", "benchmark"} & set(stages)
    if "task-distill" in stages and deploys and "prediction" not in cfg.distill.phases:
        raise UserError(
            f"{key} has {sorted(deploys)[0]}, which needs the student of TD phase 2, but "
            f"distill.phases={list(cfg.distill.phases)}: add prediction"
        )
    if "augment" in stages and not w.augmented:
        raise UserError(f"{key} has augment: give task.data_dir (the task's files)")


# ---------------------------------------------------------------------------------------------
# one planner per stage: what it reads, writes, and its wiring


def _prepare_corpus(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    command = [
        "tinybert",
        "prepare-corpus",
        *cfg.corpus.inputs,
        f"--tokenizer={w.gd_teacher}",
        f"--output={w.corpus}",
        f"--max-seq-length={cfg.corpus.max_seq_length}",
    ]
    meta = str(Path(w.corpus) / "meta.json")
    return Stage(
        "prepare-corpus",
        reads=list(cfg.corpus.inputs),
        writes=[w.corpus],
        overrides=[],
        commands=[shlex.join(command)],
        outputs={meta: ""},
        settings={
            "corpus.inputs": list(cfg.corpus.inputs),
            "corpus.max_seq_length": cfg.corpus.max_seq_length,
            "tokenizer": w.gd_teacher,
        },
    )


def _general_distill(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    wired = [f"teacher={w.gd_teacher}"]
    if "prepare-corpus" in cfg.run.stages or not cfg.corpus.path:
        wired.append(f"corpus.path={w.corpus}")
    return Stage(
        "general-distill",
        reads=[w.gd_teacher, w.corpus],
        writes=[str(w.out / "general")],
        overrides=wired,
        commands=[line.command("general-distill", wired, "resume=auto")],
    )


def _finetune(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    return Stage(
        "finetune",
        reads=[cfg.model, cfg.task.data_dir],
        writes=[str(w.out / "teacher")],
        overrides=[],
        commands=[line.command("finetune", [], "resume=auto")],
    )


def _augment(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    reads = [str(train_path(cfg.task)), cfg.augment.word_vectors, cfg.augment.mlm]
    return Stage(
        "augment",
        reads=[r for r in reads if r],
        writes=[w.augmented],
        overrides=[f"augment.output={w.augmented}"],
        commands=[line.command("augment", [f"augment.output={w.augmented}"])],
        outputs={f"{w.augmented}.summary.json": ""},
        settings={
            "augment": to_dict(cfg.augment),
            "task": to_dict(cfg.task),
            "seed": cfg.seed,
        },
    )


def _task_distill(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    wired = [f"teacher={w.teacher}"]
    reads = [w.teacher, cfg.task.data_dir]
    if "general-distill" in cfg.run.stages:
        wired += ["student.init=checkpoint", f"student.path={w.general}"]
        reads.append(w.general)
    elif cfg.student.path:
        reads.append(cfg.student.path)
    if "augment" in cfg.run.stages:
        wired.append(f"task.train_file={w.augmented}")
        reads.append(w.augmented)
    return Stage(
        "task-distill",
        reads=reads,
        writes=[str(w.out / "student")],
        overrides=wired,
        commands=[line.command("task-distill", wired, "resume=auto")],
    )


def _per_model(
    name: str, out_file: str, flags: list[str], keys: list[str], version: int | None = None
) -> Planner:
    """evaluate, export, benchmark: the same step on the teacher and on the student. `version`
    (of the output's format) is a setting too, so outputs of an older format are made again."""

    def planner(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
        models = [w.teacher, w.student]
        outputs = {str(Path(m) / out_file): str(Path(m) / "model.safetensors") for m in models}
        wired = [f"teacher={w.teacher}"]
        return Stage(
            name,
            reads=models,
            writes=list(outputs),
            overrides=wired,
            commands=[line.command(name, wired, "--model", m, *flags) for m in models],
            outputs=outputs,
            settings=stage_settings(cfg, *keys)
            | {"models": models}
            | ({"format": version} if version else {}),
        )

    return planner


def _report(cfg: RunConfig, w: Wiring, line: CommandLine) -> Stage:
    return Stage(
        "report",
        reads=[str(w.out)],
        writes=[str(w.out / "report")],
        overrides=[],
        commands=[shlex.join(["tinybert", "report", str(w.out)])],
    )


_STAGES: dict[str, Planner] = {
    "prepare-corpus": _prepare_corpus,
    "general-distill": _general_distill,
    "finetune": _finetune,
    "augment": _augment,
    "task-distill": _task_distill,
    "evaluate": _per_model(
        "evaluate",
        RESULTS_FILE,
        [],
        ["task", "finetune.eval_batch_size", "device"],
        RESULTS_FORMAT,
    ),
    "export": _per_model(
        "export",
        f"{EXPORT_SUBDIR}/{REPORT_FILE}",
        ["--optimize", "--int8"],
        ["task", "finetune.eval_batch_size"],
    ),
    "benchmark": _per_model("benchmark", SPEED_FILE, [], ["task", "benchmark"]),
    "report": _report,
}


# ---------------------------------------------------------------------------------------------
# finished or not


def finished_marks(stage: Stage, cfg: RunConfig, w: Wiring) -> list[Path]:
    """Training stages: the state files of the final/ folders that mark them finished."""
    if stage.name == "finetune":
        folders = [w.out / "teacher"]
    elif stage.name == "general-distill":
        folders = [w.out / "general"]
    elif stage.name == "task-distill":
        folders = [w.out / "student" / p for p in cfg.distill.phases]
    else:
        return []
    return [f / "final" / STATE_FILE for f in folders]


def mtimes(paths: Sequence[Path]) -> list[int | None]:
    return [p.stat().st_mtime_ns if p.is_file() else None for p in paths]


def up_to_date(stage: Stage, previous: dict[str, Any] | None) -> bool:
    """A non-training stage need not run again: it finished before with the same settings, and
    each output exists and is newer than the model it was made from."""
    if stage.trains or stage.name == "report" or not stage.outputs or previous is None:
        return False
    if previous.get("status") not in ("done", "skipped"):
        return False
    if json.dumps(previous.get("settings"), sort_keys=True) != json.dumps(
        stage.settings, sort_keys=True
    ):
        changed = sorted(
            k
            for k in set(stage.settings) | set(previous.get("settings") or {})
            if (previous.get("settings") or {}).get(k) != stage.settings.get(k)
        )
        tqdm.write(f"{stage.name}: settings changed since it last ran ({', '.join(changed)})")
        return False
    for output, source in stage.outputs.items():
        out = Path(output)
        if not out.is_file():
            return False
        if source and Path(source).is_file() and Path(source).stat().st_mtime > out.stat().st_mtime:
            return False
    return True
