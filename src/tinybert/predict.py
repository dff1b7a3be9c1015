"""`tinybert predict`: label sentences (or sentence pairs) with a saved or exported model.

    tinybert predict --model runs/sst2/onnx reviews.tsv --output labels.jsonl
    echo "a gripping, funny film" | tinybert predict --model runs/sst2/student/prediction/best

Inputs (--format, or from the file's extension; stdin is `text`):
    text   one input a line: a sentence, or sentence<TAB>pair. No header.
    tsv    like text, or any official GLUE file (train, dev or test; the layouts data/glue.py
           reads): a first line naming text columns (text [text_pair], or a GLUE task's, e.g.
           sentence, question + sentence, "#1 String" + "#2 String") is a header, and only
           those columns are read; a first line that is a CoLA row (4 columns, no header) makes
           the sentence column the text. Either way every line must have as many columns.
    csv    a header row as for tsv, then rows with real CSV quoting.
    jsonl  one object a line: {"text": ..., "text_pair": ... (optional)}; other keys ignored.
Output: one JSON object per input, in input order:
    {"line": 3, "label": "positive", "probs": {"negative": 0.02, "positive": 0.98}}
    {"line": 4, "value": 3.7}                        (regression)
    {"line": 5, "error": "empty line"}               (--skip-bad only)
Bad input (empty line, too many fields, not UTF-8, bad JSON) stops the run with "file:line: what"
(exit 2); with skip_bad it is reported on stderr and gets an error record instead. Input in
which no line can be read (the first 8,192, or all if fewer) stops the run either way.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import torch
from tqdm.auto import tqdm

from tinybert.data import (
    Example,
    TaskSpec,
    encode_examples,
    encode_texts,
    generic,
    glue,
    load_tokenizer,
    tokenizer_info,
)
from tinybert.data.task_data import check_vocab
from tinybert.errors import UserError
from tinybert.export.backend import resolve_backend, serving_precision
from tinybert.export.recommend import benchmark_hint, recommend, speed_file
from tinybert.export.runtime import OnnxLogits, find_onnx
from tinybert.model import load_model, load_model_config, saved_head
from tinybert.train.inference import (
    LogitsFn,
    bf16_logits_fn,
    predict_logits,
    predicted_entities,
    torch_logits_fn,
)

FORMATS = ("text", "tsv", "csv", "jsonl")
CHUNK = 8192  # inputs sorted and batched together: bounds memory on endless input
_SKIP_HINT = "fix it, or pass --skip-bad to write an error record for it and go on"


@dataclass(frozen=True)
class Record:
    """One input: its 1-based line and text (a sentence or a pair), or what is wrong with it."""

    line: int
    text: str | tuple[str, str] | None
    error: str | None = None


@dataclass
class PredictStats:
    inputs: int = 0  # records written, error records included
    bad: int = 0
    backend: str = ""
    model_file: str = ""


# ---------------------------------------------------------------------------------------------
# reading


def detect_format(path: str | None, fmt: str = "auto") -> str:
    """`fmt` unless "auto": then from the extension (.tsv .csv .jsonl/.json; else text)."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise UserError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower() if path and path != "-" else ""
    return {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "text")


def read_records(stream: BinaryIO, fmt: str, where: str = "<stdin>") -> Iterator[Record]:
    """The inputs of a byte stream in format `fmt`, one Record each, in order. `where` names the
    stream in the one error that is not per line (a CSV without a header)."""
    if fmt == "csv":
        yield from _csv_records(stream, where)
        return
    lines = _decoded_lines(stream)
    if fmt == "jsonl":
        yield from (_json_record(n, text, err) for n, text, err in lines)
    else:
        yield from _tsv_records(lines, header_allowed=fmt == "tsv")


def _decoded_lines(stream: BinaryIO) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text without line ending, problem or None). Split on "\\n" only: text may
    hold other Unicode line separators."""
    for lineno, raw in enumerate(stream, start=1):
        if b"\0" in raw:
            yield lineno, "", "binary data (a NUL byte); the input must be a text file"
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, "", f"not UTF-8 ({e.reason} at byte {e.start}); save the file as UTF-8"
            continue
        if lineno == 1:
            text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark
        yield lineno, text.rstrip("\r\n"), None


def _columns(names: list[str]) -> tuple[int, int | None] | None:
    """Indices of the text and pair columns a header (or JSON object) names: the generic tasks'
    text/text_pair, else a GLUE file's; None if it names no text column."""
    columns = generic.text_columns(names)
    if columns is None:
        found = glue.header_columns(names)
        columns = None if found is None else (found.text_a, found.text_b)
    return columns


@dataclass(frozen=True)
class _Layout:
    """What the first line of a tsv input says about every line: where the text is, how many
    columns a line has, and what set that count (for the message when a line differs)."""

    columns: tuple[int, int | None]
    n_fields: int
    origin: str  # "the header", "the first line (a GLUE CoLA row, no header)"
    header: bool  # the first line is a header row, not an input


def _layout(fields: list[str]) -> _Layout | None:
    """A header row (generic or any GLUE file's), or a row of a GLUE file without header
    (CoLA's train and dev files); None for anything else (plain text lines)."""
    columns = _columns(fields)
    if columns is not None:
        return _Layout(columns, len(fields), "the header", header=True)
    row = glue.headerless_columns(fields)
    if row is None:
        return None
    (a, b, n), title = row
    return _Layout((a, b), n, f"the first line (a GLUE {title} row, no header)", header=False)


def _tsv_records(
    lines: Iterator[tuple[int, str, str | None]], header_allowed: bool
) -> Iterator[Record]:
    layout = None
    for lineno, text, problem in lines:
        if problem is None and lineno == 1 and header_allowed:
            layout = _layout(text.split("\t"))
            if layout is not None and layout.header:
                continue
        if problem is None:
            fields = text.split("\t")
            problem = _fields_problem(fields, layout)
        if problem is not None:
            yield Record(lineno, None, problem)
            continue
        yield _fields_record(lineno, fields, layout.columns if layout else None)


def _fields_problem(fields: list[str], layout: _Layout | None) -> str | None:
    if fields == [""]:
        return "empty line"
    if layout is not None and len(fields) != layout.n_fields:
        return f"{len(fields)} tab-separated fields but {layout.origin} has {layout.n_fields}"
    if layout is None and len(fields) > 2:
        return (
            f"{len(fields)} tab-separated fields; expected a sentence or sentence<TAB>pair "
            "(a .tsv file with a header row, or a GLUE file, may have more columns)"
        )
    return None


def _fields_record(
    lineno: int, fields: list[str], columns: tuple[int, int | None] | None
) -> Record:
    a, b = columns if columns is not None else (0, 1 if len(fields) == 2 else None)
    texts = [fields[a]] + ([fields[b]] if b is not None else [])
    for i, t in enumerate(texts):
        if not t.strip():
            return Record(lineno, None, f"empty text in the {'pair' if i else 'first'} field")
    return Record(lineno, texts[0] if b is None else (texts[0], texts[1]))


def _json_record(lineno: int, text: str, problem: str | None) -> Record:
    if problem is None and not text.strip():
        problem = "empty line"
    if problem is not None:
        return Record(lineno, None, problem)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return Record(lineno, None, f"not valid JSON ({e.msg} at column {e.colno})")
    if not isinstance(obj, dict):
        return Record(lineno, None, f'expected an object like {{"text": "..."}}, got {text[:80]!r}')
    columns = _columns(list(obj))
    if columns is None:
        return Record(lineno, None, f'no "text" key (keys: {", ".join(list(obj)[:8])})')
    values = list(obj.values())
    a, b = columns
    texts = [values[a]] + ([values[b]] if b is not None and values[b] is not None else [])
    for v in texts:
        if not (isinstance(v, str) and v.strip()):
            return Record(lineno, None, f"text must be a non-empty string, got {v!r}"[:120])
    return Record(lineno, texts[0] if len(texts) == 1 else (texts[0], texts[1]))


def _csv_records(stream: BinaryIO, where: str) -> Iterator[Record]:
    """CSV with a header row; a quoted field may span lines (a row is named by its first)."""
    bad: dict[int, str] = {}

    def text_lines() -> Iterator[str]:
        for lineno, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad[lineno] = f"not UTF-8 ({e.reason} at byte {e.start}); save the file as UTF-8"
                line = raw.decode("utf-8", errors="replace")
            yield line.removeprefix("\ufeff") if lineno == 1 else line

    reader = csv.reader(text_lines())
    header = next(reader, None)
    columns = _columns([c.strip() for c in header]) if header else None
    if header is None or columns is None:
        raise UserError(
            f"{where}:1: a CSV input needs a header row naming its text column "
            f"(text, sentence, sentence1, ...); got {header!r}"
        )
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            yield Record(start, None, f"unreadable CSV ({e})")
            continue
        end = reader.line_num
        problem = next((bad[n] for n in range(start, end + 1) if n in bad), None)
        if problem is None and not row:
            problem = "empty line"
        if problem is None and len(row) != len(header):
            problem = f"{len(row)} fields but the header has {len(header)}"
        yield Record(start, None, problem) if problem else _fields_record(start, row, columns)


# ---------------------------------------------------------------------------------------------
# the model


def fastest_backend(model_dir: str | Path, batch_size: int, precision: str) -> tuple[str, str, str]:
    """`--backend fastest`: (backend, precision, a line saying why) from the model's speed.json
    (`tinybert benchmark`), the fastest at the measured batch size nearest `batch_size`; only
    ONNX rows for an export folder without PyTorch weights."""
    if precision != "auto":
        raise UserError(
            f"--backend fastest chooses the precision too; drop --precision {precision}, "
            "or name the backend (--backend torch or onnx)"
        )
    weights = resolve_backend(model_dir, "auto") == "torch"
    rec = recommend(model_dir, batch_size, ("torch", "onnx") if weights else ("onnx",))
    if rec is None:
        raise UserError(
            f"--backend fastest: no benchmark result for {model_dir} "
            f"({speed_file(model_dir)}); {benchmark_hint(model_dir)}, or name the backend"
        )
    return rec.backend, rec.precision, rec.line()


class Predictor:
    """A saved (PyTorch) or exported (ONNX) classifier with its tokenizer and labels: a sequence
    classifier (a label per input), or a token classifier (NER: entities per input, in CLUENER's
    JSON layout).

    model_dir: a model directory (config.json, weights, tokenizer) or an export folder.
    allow_smaller_vocab: accept a tokenizer with fewer tokens than the model's embedding rows
    (else refused: a truncated or wrong vocab.txt silently turns words into [UNK]).
    """

    def __init__(
        self,
        model_dir: str | Path,
        backend: str = "auto",
        precision: str = "auto",
        onnx_file: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        allow_smaller_vocab: bool = False,
    ):
        self.model_dir = Path(model_dir)
        self.backend = resolve_backend(model_dir, backend, onnx_file)
        # auto: bf16 for torch where this machine is fast at it, else fp32
        self.precision = serving_precision(self.backend, precision, torch.device(device))
        precision = self.precision
        self.config = load_model_config(model_dir)
        self.token = saved_head(model_dir) == "token"
        self.tokenizer = load_tokenizer(model_dir)
        n_vocab, self.pad_id = tokenizer_info(self.tokenizer)
        check_vocab(
            n_vocab,
            self.config.vocab_size,
            model_dir,
            allow_smaller_vocab,
            allow_with="--allow-smaller-vocab",
        )
        self.regression = self.config.num_labels == 1
        self.labels = self.config.id2label or tuple(
            f"LABEL_{i}" for i in range(self.config.num_labels)
        )
        if self.backend == "onnx":
            path = find_onnx(model_dir, precision, onnx_file)
            self.fn: LogitsFn = OnnxLogits(path, threads)
            self.model_file = str(path)
        else:
            self.fn = self._torch_fn(precision, device, threads)
            self.model_file = str(self.model_dir)

    def _torch_fn(self, precision: str, device: str, threads: int | None) -> LogitsFn:
        if threads:
            torch.set_num_threads(threads)
        model, report = load_model(self.model_dir, head="token" if self.token else "sequence")
        if report.initialised:
            raise UserError(
                f"{self.model_dir} has no trained classifier ({', '.join(report.initialised)}); "
                "predict with a fine-tuned or distilled model"
            )
        dev = torch.device(device)
        if precision == "bf16" and dev.type == "cpu":
            # bf16 weights: faster on CPU than autocast, which casts every weight per call
            return bf16_logits_fn(model, dev)
        base = torch_logits_fn(model.to(dev), dev)
        if precision == "fp32":
            return base

        def bf16(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                return base(batch)

        return bf16

    def logits(
        self,
        texts: list[str | tuple[str, str]],
        batch_size: int,
        max_seq_length: int,
        progress: Callable[[int], object] | None = None,
    ) -> torch.Tensor:
        """(N, C) float32 logits of `texts`, in their order (batched shortest first inside)."""
        if not texts:
            return torch.empty(0, self.config.num_labels)
        data = encode_texts(self.tokenizer, texts, max_seq_length)
        logits = predict_logits(self.fn, data, batch_size, pad_id=self.pad_id, progress=progress)
        if not isinstance(logits, torch.Tensor):  # a token model's per-text rows
            raise UserError("logits() is for sequence models; use entities() for a token model")
        return logits

    def predict(
        self,
        texts: list[str | tuple[str, str]],
        batch_size: int,
        max_seq_length: int,
        progress: Callable[[int], object] | None = None,
    ) -> list[dict]:
        """One output object per text, in order (see `outputs` and `entities`)."""
        if self.token:
            return self.entities(texts, batch_size, max_seq_length, progress)
        return self.outputs(self.logits(texts, batch_size, max_seq_length, progress))

    def entities(
        self,
        texts: list[str | tuple[str, str]],
        batch_size: int,
        max_seq_length: int,
        progress: Callable[[int], object] | None = None,
    ) -> list[dict]:
        """Token models: {"text", "label": {type: {entity: [[start, end]]}}} per text, CLUENER's
        layout (character offsets, end inclusive). Tags are BIOS/BIO names from id2label."""
        sentences = [t for t in texts if isinstance(t, str)]
        if len(sentences) != len(texts):
            raise UserError("a token-classification model labels single sentences, not pairs")
        spec = TaskSpec("predict", tuple(self.labels), False, (), "", "", {}, kind="token")
        examples = [Example(t, None, None, "", spans=()) for t in sentences]
        data = encode_examples(self.tokenizer, examples, spec, max_seq_length)
        logits = predict_logits(self.fn, data, batch_size, pad_id=self.pad_id, progress=progress)
        out = []
        for i, text in enumerate(sentences):
            label: dict[str, dict[str, list]] = {}
            for kind, start, end in sorted(predicted_entities(spec, data, i, logits[i]), key=_at):
                label.setdefault(kind, {}).setdefault(text[start : end + 1], []).append(
                    [start, end]
                )
            out.append({"text": text, "label": label})
        return out

    def outputs(self, logits: torch.Tensor) -> list[dict]:
        """One {"label", "probs"} (or {"value"} for regression) per row of logits (N, C)."""
        if self.regression:
            return [{"value": round(float(v), 6)} for v in logits[:, 0]]
        probs = torch.softmax(logits.double(), dim=-1).numpy()
        best = np.argmax(probs, axis=-1)
        return [
            {
                "label": self.labels[k],
                "probs": {
                    name: round(float(p), 6) for name, p in zip(self.labels, row, strict=True)
                },
            }
            for k, row in zip(best, probs, strict=True)
        ]


# ---------------------------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class PredictOptions:
    batch_size: int = 64  # sequences per forward pass
    # tokens per input incl. [CLS]/[SEP], pairs truncated longest-first; None: 128, or fewer
    # if the model has fewer positions
    max_seq_length: int | None = None
    skip_bad: bool = False  # bad input: error record and go on, instead of stopping


def predict_records(
    predictor: Predictor,
    records: Iterable[Record],
    out: TextIO,
    options: PredictOptions = PredictOptions(),
    where: str = "<stdin>",
    progress: tqdm | None = None,
) -> PredictStats:
    """Predict every record and write one JSON line each to `out`, in input order.

    Records are taken CHUNK at a time; inside a chunk they are sorted by length and padded per
    batch. A bad record raises UserError("where:line: ...") unless options.skip_bad, which
    reports it on stderr and writes {"line": N, "error": ...} in its place. A first chunk with
    no good record raises, skip_bad or not, before anything is written.
    """
    options = replace(options, max_seq_length=_check_length(predictor, options.max_seq_length))
    stats = PredictStats(backend=predictor.backend, model_file=predictor.model_file)
    for i, chunk in enumerate(_chunks(records)):
        if i == 0:
            _refuse_unreadable(chunk, where)
        _predict_chunk(predictor, chunk, out, options, where, stats, progress)
    return stats


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _refuse_unreadable(chunk: list[Record], where: str) -> None:
    """Input of which no line can be read is in a layout predict does not know (or not text):
    one error, instead of an error record for every line and exit 0."""
    if any(r.error is None for r in chunk):
        return
    n = len(chunk)
    lines = (
        "its one line is" if n == 1 else f"all {n} lines are" if n < CHUNK else f"the first {n} are"
    )
    first = chunk[0]
    raise UserError(
        f"{where}: no line could be read ({lines} bad; line {first.line}: "
        f"{first.error}); give sentences a line, a TSV with a header, a GLUE file, CSV or "
        f"JSONL (--format {'|'.join(FORMATS)})"
    )


def _check_length(predictor: Predictor, max_seq_length: int | None) -> int:
    limit = predictor.config.max_position_embeddings
    if max_seq_length is None:
        return min(128, limit)
    smallest = predictor.tokenizer.num_special_tokens_to_add(is_pair=True) + 2
    if not smallest <= max_seq_length <= limit:
        raise UserError(
            f"--max-seq-length {max_seq_length}: use {smallest} to {limit} "
            f"(the model has {limit} positions)"
        )
    return max_seq_length


def _predict_chunk(
    predictor: Predictor,
    chunk: list[Record],
    out: TextIO,
    options: PredictOptions,
    where: str,
    stats: PredictStats,
    bar: tqdm | None,
) -> None:
    for r in chunk:
        if r.error is not None:
            message = f"{where}:{r.line}: {r.error}"
            if not options.skip_bad:
                raise UserError(f"{message} ({_SKIP_HINT})")
            tqdm.write(f"skipped {message}", file=sys.stderr)
            stats.bad += 1
    good = [r for r in chunk if r.error is None]
    texts = [r.text for r in good if r.text is not None]  # (a record without error has a text)
    assert options.max_seq_length is not None  # predict_records resolved it
    # Not `bar and bar.update`: a bar with total=0 is falsy, and the bar itself is not callable.
    update = None if bar is None else bar.update
    results = iter(predictor.predict(texts, options.batch_size, options.max_seq_length, update))
    for r in chunk:
        body = {"error": r.error} if r.error is not None else next(results)
        out.write(json.dumps({"line": r.line, **body}, ensure_ascii=False) + "\n")
    out.flush()
    if bar is not None:
        bar.update(len(chunk) - len(good))
    stats.inputs += len(chunk)


def predict_file(
    predictor: Predictor,
    input_path: str | None,
    output_path: str | None,
    fmt: str = "auto",
    options: PredictOptions = PredictOptions(),
    show_progress: bool | None = None,
) -> PredictStats:
    """Read `input_path` (None or "-": stdin), write JSONL to `output_path` (None: stdout).

    An output file is written under a temporary name and renamed at the end, so a run stopped by
    bad input leaves no half-written file. show_progress None: a bar for input files when stderr
    is a terminal; stdin never has one.
    """
    fmt = detect_format(input_path, fmt)
    path = None if input_path is None or input_path == "-" else Path(input_path)
    from_stdin = path is None
    where = "<stdin>" if from_stdin else str(input_path)
    stream = sys.stdin.buffer if path is None else _open_text_file(path)
    bar = None
    if path is not None and show_progress is not False:
        total = _count_lines(path)
        bar = tqdm(total=total, unit=" lines", disable=None if show_progress is None else False)
    try:
        records = read_records(stream, fmt, where)
        if output_path is None:
            return predict_records(predictor, records, sys.stdout, options, where, bar)
        return _to_file(predictor, records, Path(output_path), options, where, bar)
    finally:
        if bar is not None:
            bar.close()
        if not from_stdin:
            stream.close()


def _to_file(
    predictor: Predictor,
    records: Iterable[Record],
    path: Path,
    options: PredictOptions,
    where: str,
    bar: tqdm | None,
) -> PredictStats:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            stats = predict_records(predictor, records, out, options, where, bar)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return stats


def _open_text_file(path: Path) -> BinaryIO:
    if not path.is_file():
        raise UserError(f"{path}: input file not found")
    stream = open(path, "rb")  # noqa: SIM115 (predict_file closes it)
    if b"\0" in stream.peek(8192)[:8192]:  # a binary file would be thousands of bad lines
        stream.close()
        raise UserError(
            f"{path}: not a text file (binary data); give a text, TSV, CSV or JSONL file"
        )
    return stream


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _at(entity: tuple[str, int, int]) -> tuple[int, int]:
    return entity[1], entity[2]
