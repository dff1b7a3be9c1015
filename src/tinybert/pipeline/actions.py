"""What each command does: alone (`tinybert finetune ...`), and as a stage of `tinybert run`.

A command's function takes the parsed arguments and the loaded config (None for a command that
reads none); a stage's function takes its planned `Stage`, the stage's config (the run's, plus
its wiring) and the run's `Wiring`. The stage registry (commands.py) names them. Each imports
what it needs inside, so that `--help` and config errors answer before torch is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinybert.config import Config, dump_yaml
from tinybert.errors import UserError
from tinybert.paths import check_output_dir, check_output_file
from tinybert.pipeline.wiring import Stage, Wiring


def _given(cfg: Config | None) -> Config:
    """The config of a command that always loads one (the registry's `config="always"`)."""
    if cfg is None:
        raise TypeError("this command needs its config; the registry loads it")
    return cfg


# ---------------------------------------------------------------------------------------------
# the commands alone


def show_config(args: argparse.Namespace, cfg: Config | None) -> None:
    print(dump_yaml(_given(cfg)), end="")


def general_distill(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.recipes.general_distill import STAGE, run_general_distill

    cfg = _given(cfg)
    _check_output_dir(cfg, STAGE)
    result = run_general_distill(cfg)
    refresh_card(result.final_dir)
    print(f"general distillation: {result.steps} steps -> {result.final_dir}")


def finetune(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.recipes.finetune import STAGE, run_finetune

    cfg = _given(cfg)
    _check_output_dir(cfg, STAGE)
    result = run_finetune(cfg)
    refresh_card(result.best_dir, result.final_dir)
    print(f"teacher: best {result.best_metric} at step {result.best_step} -> {result.best_dir}")


def task_distill(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.recipes.task_distill import STAGE, run_task_distill

    cfg = _given(cfg)
    _check_output_dir(cfg, STAGE)
    for phase, result in run_task_distill(cfg).items():
        refresh_card(result.best_dir, result.final_dir)
        best = f", best {result.best_metric} at step {result.best_step}" if result.best_dir else ""
        print(f"{phase}: {result.steps} steps{best} -> {result.best_dir or result.final_dir}")


def augment(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.recipes.augment import run_augment

    augmented = run_augment(_given(cfg))
    print("\n".join(augmented.summary.lines()))
    print(f"-> {augmented.output} (summary: {augmented.summary_path})")
    print(f"train on it with task.train_file={augmented.output}")


def init_model(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.recipes.init_model import run_init_model

    cfg = _given(cfg)
    out = run_init_model(cfg, args.vocab, args.output, lowercase=not args.cased)
    s = cfg.student
    print(
        f"random BERT {s.num_hidden_layers}L-{s.hidden_size} (heads {s.num_attention_heads}, "
        f"FFN {s.intermediate_size}) with {args.vocab} -> {out}"
    )


def prepare_corpus(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.data.corpus import PackingOptions, convert_tfrecord, prepare_corpus

    check_output_dir(Path(args.output), "--output")
    options = PackingOptions(
        max_seq_length=args.max_seq_length,
        short_seq_prob=args.short_seq_prob,
        seed=args.seed,
        shard_rows=args.shard_rows,
    )
    if args.tfrecord:
        stats = convert_tfrecord(args.inputs, args.tokenizer, args.output, options)
    else:
        stats = prepare_corpus(args.inputs, args.tokenizer, args.output, options)
    rate = stats.bytes_read / max(stats.seconds, 1e-9) / 1e6
    print(
        f"{stats.sequences} sequences, {stats.tokens} tokens from {stats.documents} documents "
        f"({stats.bytes_read / 1e6:.1f} MB in {stats.seconds:.1f} s, {rate:.2f} MB/s) -> "
        f"{args.output}"
    )
    for name, bad in stats.undecodable.items():
        print(
            f"  {name}: skipped {bad['lines']} lines ({bad['bytes']} bytes) that are not UTF-8, "
            f"the first at line {bad['first_line']} (counted in meta.json; save the file as "
            "UTF-8 to keep them)"
        )


def check_device(name: str, what: str) -> None:
    """A device this machine has: cpu, cuda[:N] with a GPU present (auto allowed in configs)."""
    from tinybert.train.distributed import resolve_device

    try:
        resolve_device(name)
    except UserError as e:
        raise UserError(f"{what}: {e}") from None


def _check_output_dir(cfg: Config, stage: str) -> None:
    """output_dir must be a folder, and it and the stage's folder in it (a run resumed, maybe
    someone else's) writable. Each stage writes its <stage>/config.yaml itself, once it trains:
    not when it is skipped as finished, nor when its resume is refused."""
    check_output_dir(Path(cfg.output_dir), "output_dir")
    check_output_dir(Path(cfg.output_dir) / stage, "output_dir")


def export(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.export.onnx import export_for_task
    from tinybert.export.recommend import recommendation_lines

    # cfg: a task given (config or overrides; the registry loads it only then): check on, and
    # score, its dev data.
    output = args.output or str(Path(args.model) / "onnx")
    check_output_dir(Path(output), "--output")  # writable, before the export's work
    result = export_for_task(args.model, output, cfg, args.opset, args.optimize, args.int8)
    print("\n".join(result.summary()))
    print("\n".join(recommendation_lines(args.model)))  # speed.json's fastest, or how to measure
    refresh_card(args.model)


def predict(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.predict import PredictOptions, Predictor, fastest_backend, predict_file

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.output:
        inputs = (args.input, args.model, args.onnx)  # nothing it reads, nor in the model folder
        check_output_file(Path(args.output), "--output", inputs)
    check_device(args.device, "--device")
    backend, precision = args.backend, args.precision
    if backend == "fastest":  # speed.json's choice at this batch size, said on stderr
        backend, precision, why = fastest_backend(args.model, args.batch_size, precision)
        print(f"--backend fastest: {why}", file=sys.stderr)
    predictor = Predictor(
        args.model,
        backend,
        precision,
        args.onnx,
        args.device,
        args.threads,
        allow_smaller_vocab=args.allow_smaller_vocab,
    )
    options = PredictOptions(args.batch_size, args.max_seq_length, args.skip_bad)
    progress = False if args.no_progress else None
    stats = predict_file(predictor, args.input, args.output, args.format, options, progress)
    if stats.bad:
        print(
            f"{stats.bad} of {stats.inputs} inputs were bad (error records written)",
            file=sys.stderr,
        )


def evaluate(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.evaluate import check_output, default_output, run_evaluate, write_results

    cfg = _given(cfg)
    if not args.model and not args.onnx:
        raise UserError("evaluate needs --model DIR (a saved model or an export folder)")
    if args.model and not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: no such model folder")
    model_dir = args.model or str(Path(args.onnx).parent)
    output = Path(args.output) if args.output else default_output(model_dir)
    check_output(cfg, output, model_dir, args.onnx, args.config)
    results = run_evaluate(cfg, model_dir, args.backend, args.precision, args.onnx)
    if results.get("skipped_rows"):
        print(
            f"skipped {results['skipped_rows']} malformed or blank dev rows (blank lines "
            "always, malformed ones with task.on_bad_row=skip); the metrics leave them out",
            file=sys.stderr,
        )
    print(write_results(results, output))  # stdout: the JSON alone (notices: stderr, or in it)
    _warn_if_trivial(results)
    if output == default_output(model_dir):
        refresh_card(model_dir)


def _warn_if_trivial(results: dict[str, Any]) -> None:
    """A model no better than the dev set's trivial baseline is called that, on stderr."""
    from tinybert.report.files import is_trivial, trivial_sentence, verdict_of

    verdict = verdict_of(results)
    if is_trivial(verdict):
        print(f"warning: {trivial_sentence('model', verdict)}", file=sys.stderr)


def refresh_card(*model_dirs: str | Path | None) -> None:
    """(Re)write the model card (README.md) of models a tinybert stage saved (a folder of a
    stage that logs metrics.jsonl, or one that already has our card) from the files beside
    them. Other folders (a downloaded teacher, an export folder) are left alone, and so is a
    README.md that tinybert did not write."""
    from tinybert.report.card import write_cards

    if os.environ.get("RANK", "0") != "0":  # under torchrun: the main process only
        return
    folders = [Path(d) for d in model_dirs if d is not None]
    write_cards(
        [
            d
            for d in folders
            if (d.parent / "metrics.jsonl").is_file() or (d / "README.md").is_file()
        ]
    )


def benchmark(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.benchmark import SPEED_FILE, SpeedOptions, run_benchmark, summary_lines

    cfg = _given(cfg)
    if Path(args.model).is_dir():  # a missing one: the model loader's message
        check_output_file(Path(args.model) / SPEED_FILE, "benchmark result")  # before measuring
    result, path = run_benchmark(cfg, args.model, SpeedOptions.from_config(cfg.benchmark))
    print("\n".join(summary_lines(result)))
    print(f"-> {path}")
    refresh_card(args.model)


def report(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.report import build_report

    if args.output:  # the default, RUN_DIR/report, is checked once the run is found
        check_output_dir(Path(args.output), "--output")
    built = build_report(args.run_dir, args.output)
    print(f"report: {built.md}\n        {built.html}")
    for line in built.missing:
        print(f"missing: {line}", file=sys.stderr)


def convert_mindspore(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.convert.mindspore import convert_checkpoint

    check_output_dir(Path(args.output), "--output")
    labels: list[str] | None = None
    head = args.head
    if args.task:
        from tinybert.data.tasks import get_task

        task = get_task(args.task)
        labels, head = list(task.labels), head or task.kind
    if args.labels:
        labels = [label.strip() for label in args.labels.split(",")]
    if args.num_attention_heads is not None and args.num_attention_heads < 1:
        raise UserError(f"--num-attention-heads must be >= 1, got {args.num_attention_heads}")
    result = convert_checkpoint(
        args.checkpoint,
        args.output,
        args.vocab,
        labels,
        args.seed_config,
        head=head,
        prefix=args.prefix,
        num_attention_heads=args.num_attention_heads,
        classifier_activation=None if args.classifier_activation == "none" else "relu",
    )
    print("\n".join(result.summary()))


def convert_mindspore_config(args: argparse.Namespace, cfg: Config | None) -> None:
    from tinybert.convert.mindspore_config import convert_config

    text = convert_config(args.seed_config, task=args.task)
    if not args.output:
        print(text, end="")
        return
    check_output_file(Path(args.output), "--output", (args.seed_config,))
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"-> {args.output} (check it: tinybert show-config --config {args.output})")


# ---------------------------------------------------------------------------------------------
# the stages of `tinybert run`. Training stages run on every process, with resume=auto (the
# runner's), so a finished one is skipped by its own resume and an interrupted one continues;
# the others run on the main process only.


def work_prepare_corpus(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.data.corpus import PackingOptions
    from tinybert.data.corpus import prepare_corpus as pack

    check_output_dir(Path(w.corpus), "corpus.path")
    options = PackingOptions(max_seq_length=cfg.corpus.max_seq_length)
    stats = pack(list(cfg.corpus.inputs), w.gd_teacher, w.corpus, options)
    tqdm.write(f"prepare-corpus: {stats.sequences} sequences -> {w.corpus}")


def corpus_ready(stage: Stage, cfg: Config, w: Wiring) -> bool:
    """prepare-corpus: a corpus already in corpus.path, made from the same inputs at the same
    length, is used as it is; one made otherwise is refused (never silently replaced)."""
    meta_path = Path(w.corpus) / "meta.json"
    if not meta_path.is_file():
        return False
    from tinybert.data.corpus import expand_inputs

    meta = json.loads(meta_path.read_text())
    sources = [str(Path(p).resolve()) for p in expand_inputs(list(cfg.corpus.inputs))]
    if meta.get("max_seq_length") != cfg.corpus.max_seq_length or meta.get("sources") != sources:
        raise UserError(
            f"{w.corpus} holds a corpus made from other inputs or at another length "
            f"(max_seq_length {meta.get('max_seq_length')}, now {cfg.corpus.max_seq_length}); "
            "remove it, or set corpus.path to a new folder"
        )
    return True


def work_general_distill(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tinybert.recipes.general_distill import run_general_distill

    run_general_distill(cfg)


def work_finetune(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tinybert.recipes.finetune import run_finetune

    run_finetune(cfg)


def work_task_distill(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tinybert.recipes.task_distill import run_task_distill

    run_task_distill(cfg)


def work_augment(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.recipes.augment import run_augment

    result = run_augment(cfg)
    tqdm.write("\n".join(result.summary.lines()))


def _each_model(stage: Stage, w: Wiring) -> Iterator[tuple[str, str]]:
    """evaluate, export, benchmark: (role, model) of the run's teacher, then its student, those
    the stage's plan reads (export leaves out a teacher that is not a BERT); one that is not
    there stops the stage when its turn comes."""
    name = stage.name
    for role, model in (("teacher", w.teacher), ("student", w.student)):
        if model not in stage.reads:
            from tqdm.auto import tqdm

            tqdm.write(f"{name}: the {role} ({w.teacher_type}) is left out: tinybert {name}s BERTs")
            continue
        if not Path(model).is_dir():
            fix = (
                "give teacher=<a fine-tuned model>, or add finetune to run.stages"
                if role == "teacher"
                else "add task-distill to run.stages"
            )
            raise UserError(f"{name}: no {role} at {model}; {fix}")
        yield role, model


def work_evaluate(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.evaluate import default_output, run_evaluate, write_results
    from tinybert.report.files import is_trivial, trivial_sentence

    for role, model in _each_model(stage, w):
        results = run_evaluate(cfg, model)
        write_results(results, default_output(model))
        shown = {k: v for k, v in results.items() if isinstance(v, float)}
        tqdm.write(f"evaluate {model}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        verdict = results.get("verdict") or {}
        if is_trivial(verdict):
            tqdm.write(f"  !!! {trivial_sentence(role, verdict)}")


def work_export(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.export.onnx import export_for_task

    for _, model in _each_model(stage, w):
        exported = export_for_task(model, Path(model) / "onnx", cfg, optimize=True, int8=True)
        tqdm.write("\n".join(exported.summary()))


def work_benchmark(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.benchmark import SpeedOptions, run_benchmark, summary_lines

    for _, model in _each_model(stage, w):
        speed, path = run_benchmark(cfg, model, SpeedOptions.from_config(cfg.benchmark))
        tqdm.write("\n".join([f"benchmark {model} -> {path}", *summary_lines(speed)]))


def work_report(stage: Stage, cfg: Config, w: Wiring) -> None:
    from tqdm.auto import tqdm

    from tinybert.report import build_report

    built = build_report(w.out)
    tqdm.write(f"report: {built.md} and {built.html}")
    for line in built.missing:
        tqdm.write(f"  missing: {line}")
