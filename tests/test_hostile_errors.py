"""Hostile-user cases from issue 16: clean errors.

A list or mapping where a number belongs, a config file that is not UTF-8, Ctrl-C while torch
imports, every official GLUE layout through `predict`, input of which no line can be read, and
blank lines in data files: each ends in one clear line (or is counted), never a traceback.
"""

from __future__ import annotations

import builtins
import io
import json
import sys
import types
import typing
from pathlib import Path
from typing import Annotated

import pytest

from tinybert.cli import main
from tinybert.config import TaskConfig, leaf_keys, load_config
from tinybert.data import get_task, read_examples
from tinybert.data.sick import COLUMNS as SICK_COLUMNS
from tinybert.data.task_data import load_task_data
from tinybert.data.tasks import ExampleStream
from tinybert.errors import UserError
from tinybert.model import load_model_config
from tinybert.predict import read_records

from .test_export import make_classifier

GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"


def one_line(capsys, *needles: str) -> str:
    """stderr must be exactly one line, holding every needle, and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- config value types


def config_keys() -> list[tuple[str, bool]]:
    """(dotted key, is a list) for every leaf key of the config (tinybert.config.leaf_keys), so
    a new key is covered without listing it."""
    out = []
    for k in leaf_keys():
        hint = k.hint
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
        if typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        out.append((k.key, typing.get_origin(hint) is tuple))
    return out


KEYS = config_keys()
# YAML text -> the value it loads as, for the message. A scalar key gets a list and a mapping;
# a list key a mapping and lists of lists / mappings.
SCALAR_BAD = {"[1]": [1], "[1, 2]": [1, 2], "{a: 1}": {"a": 1}}
LIST_BAD = {"{a: 1}": {"a": 1}, "[[1]]": [[1]], "[{a: 1}]": [{"a": 1}]}
CASES = [
    (key, text, value)
    for key, is_list in KEYS
    for text, value in (LIST_BAD if is_list else SCALAR_BAD).items()
]


def test_the_walk_finds_scalar_and_list_keys_of_every_section():
    found = dict(KEYS)
    assert found["prediction.lr"] is False and found["distill.temperature"] is False
    assert found["task.name"] is False and found["task.regression"] is False
    assert found["distill.phases"] is True and found["benchmark.batch_sizes"] is True
    assert {"general.lr", "card.base_model", "run.allow_trivial", "augment.fields"} <= set(found)


@pytest.mark.parametrize(("key", "text", "value"), CASES, ids=[f"{k}={t}" for k, t, _ in CASES])
def test_a_list_or_mapping_of_the_wrong_shape_is_refused_in_one_line(key, text, value, tmp_path):
    override = f"{key}={text}"
    with pytest.raises(UserError) as info:
        load_config([], [override])
    message = str(info.value)
    assert message.startswith(f"config key '{key}' (from command line '{override}'): expected ")
    assert message.endswith(f", got {value!r}") and "\n" not in message
    # the same value in a YAML file names the file
    *sections, name = key.split(".")
    yaml_text = "".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text + f"{'  ' * len(sections)}{name}: {text}\n")
    with pytest.raises(UserError) as info:
        load_config([path], [])
    assert str(info.value).startswith(f"config key '{key}' (from {path}): expected ")


def test_the_issue_cases_through_the_command_line(capsys):
    for override, expected in (
        ("prediction.lr=[1,2]", "expected float, got [1, 2]"),
        ("distill.temperature=[1]", "expected float, got [1]"),
        ("finetune.lr={a: 1}", "expected float, got {'a': 1}"),
    ):
        assert main(["show-config", override]) == 2
        one_line(capsys, f"error: config key '{override.partition('=')[0]}'", expected)


def test_config_file_not_utf8_is_one_line_naming_the_file(tmp_path, capsys):
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_text("task:\n  name: cola\n", encoding="utf-16")  # with its byte-order mark
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("task:\n  name: café\n".encode("latin-1"))
    assert main(["show-config", "--config", str(utf16)]) == 2
    one_line(capsys, f"error: {utf16}: not UTF-8 text", "UTF-16 byte-order mark", "must be UTF-8")
    assert main(["show-config", "--config", str(latin1)]) == 2
    line = one_line(capsys, f"error: {latin1}: not UTF-8 text", "must be UTF-8")
    assert "UTF-16" not in line
    bom8 = tmp_path / "bom8.yaml"  # UTF-8 with a byte-order mark is UTF-8
    bom8.write_text("\ufefftask:\n  name: cola\n", encoding="utf-8")
    assert load_config([bom8]).task.name == "cola"


def test_a_model_config_json_not_utf8_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-16")
    with pytest.raises(UserError, match="config.json: not UTF-8 text; save it as UTF-8"):
        load_model_config(tmp_path)


def test_other_malformed_yaml_is_one_line(tmp_path, capsys):
    cases = {
        "syntax.yaml": ("seed: 1\ntask: [sst2\n", ":3: not valid YAML"),
        "number_key.yaml": ("task:\n  1: x\n  name: sst2\n", "unknown config key 'task.1'"),
        "null_key.yaml": ("null: 2\n", "unknown config key 'None'"),
        "include.yaml": ("include: 5\n", "include must be a file name or a list of file names"),
        "include_list.yaml": ("include: [[a.yaml]]\n", "include must be a file name"),
    }
    for name, (text, needle) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert main(["show-config", "--config", str(path)]) == 2
        one_line(capsys, "error: ", str(path), needle)


# --------------------------------------------------------------------------- Ctrl-C at start-up


def test_ctrl_c_while_torch_imports_exits_130_with_one_line(monkeypatch, tmp_path, capsys):
    """Ctrl-C lands while a recipe imports torch; torch is then half imported, and importing it
    again raised `RuntimeError: Only a single TORCH_LIBRARY ...` from cli.main's cleanup."""
    real_import = builtins.__import__

    def interrupted_import(name: str, *args, **kwargs):
        if name == "tinybert.recipes.finetune":
            raise KeyboardInterrupt
        if name == "torch" or name.startswith(("torch.", "tinybert.train")):
            raise RuntimeError("Only a single TORCH_LIBRARY can be used to register namespace")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tinybert.train.distributed", raising=False)
    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    code = main(["finetune", f"output_dir={tmp_path / 'run'}"])
    monkeypatch.undo()
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_process_group_is_left_only_after_a_finished_import(monkeypatch, capsys):
    calls: list[bool] = []
    done = types.ModuleType("tinybert.train.distributed")
    done.cleanup = lambda synchronise=False: calls.append(synchronise)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tinybert.train.distributed", done)
    assert main(["show-config"]) == 0
    assert calls == [True]  # a command that succeeded waits for the other processes
    half = types.ModuleType("tinybert.train.distributed")
    half.__spec__ = types.SimpleNamespace(_initializing=True)  # type: ignore[assignment]
    half.cleanup = lambda synchronise=False: calls.append(synchronise)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tinybert.train.distributed", half)
    assert main(["show-config"]) == 0
    assert calls == [True]
    capsys.readouterr()


# --------------------------------------------------------------------------- predict: GLUE files


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_classifier(tmp_path_factory.mktemp("hostile") / "model", labels=("neg", "pos"))


OFFICIAL = sorted(GLUE.glob("*/*.tsv"))
# The text columns of GLUE's test files, named in their headers (they have no label column).
TEST_COLUMNS = {
    "CoLA": ("sentence", None),
    "SST-2": ("sentence", None),
    "MRPC": ("#1 String", "#2 String"),
    "QQP": ("question1", "question2"),
    "STS-B": ("sentence1", "sentence2"),
    "MNLI": ("sentence1", "sentence2"),
    "QNLI": ("question", "sentence"),
    "RTE": ("sentence1", "sentence2"),
    "WNLI": ("sentence1", "sentence2"),
}


def expected_texts(path: Path) -> list[tuple[int, str | tuple[str, str]]]:
    """(line, text) of every row, as evaluate's reader reads a train/dev file; a test file
    (no labels, which that reader refuses) as its header names the columns."""
    if not path.name.startswith("test"):
        examples, skipped = read_examples(get_task(path.parent.name), path)
        assert skipped == 0
        return [
            (int(ex.source.rpartition(":")[2]), ex.text_a if ex.text_b is None else (ex.text_a, ex.text_b))
            for ex in examples
        ]  # fmt: skip
    header, *rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    a, b = TEST_COLUMNS[path.parent.name]
    return [
        (n, row[header.index(a)] if b is None else (row[header.index(a)], row[header.index(b)]))
        for n, row in enumerate(rows, start=2)
    ]


@pytest.mark.parametrize("path", OFFICIAL, ids=[f"{p.parent.name}/{p.name}" for p in OFFICIAL])
def test_predict_reads_every_official_glue_layout(path, model, capsys):
    want = expected_texts(path)
    assert len(want) >= 2
    pairs = TEST_COLUMNS[path.parent.name][1] is not None
    assert all(isinstance(text, tuple) == pairs for _, text in want)
    records = list(read_records(io.BytesIO(path.read_bytes()), "tsv", str(path)))
    assert [(r.line, r.text, r.error) for r in records] == [(n, t, None) for n, t in want]
    code = main(["predict", str(path), f"--model={model}", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [json.loads(x) for x in captured.out.splitlines()]
    assert [r["line"] for r in rows] == [n for n, _ in want]
    assert all(r["label"] in ("neg", "pos") for r in rows)


def test_a_cola_file_with_a_short_row_names_the_line(tmp_path, model, capsys):
    path = tmp_path / "dev.tsv"
    path.write_text("gj04\t1\t\tThe sailors rode the breeze.\nonly\ttwo\n", encoding="utf-8")
    assert main(["predict", str(path), f"--model={model}", "--no-progress"]) == 2
    one_line(capsys, f"{path}:2: 2 tab-separated fields but the first line (a GLUE CoLA row")


@pytest.mark.parametrize("skip_bad", [True, False])
@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("wide.tsv", b"a\tb\tc\n" * 5, "3 tab-separated fields"),
        ("latin1.txt", "caf\xe9 film\n".encode("latin-1") * 3, "not UTF-8"),
    ],
)
def test_input_of_which_no_line_can_be_read_fails(
    tmp_path, model, capsys, name, content, problem, skip_bad
):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    args = ["predict", str(path), f"--model={model}", "--no-progress", f"--output={out}"]
    assert main(args + (["--skip-bad"] if skip_bad else [])) == 2
    n = content.count(b"\n")
    one_line(capsys, f"error: {path}: no line could be read (all {n} lines are bad", problem)
    assert not out.exists()  # nothing written: no file of error records


# --------------------------------------------------------------------------- blank lines


def test_blank_lines_are_counted_not_errors(tmp_path):
    sst2 = (GLUE / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "dev.tsv"  # one blank line inside, one at the end (after the final newline)
    path.write_text("\n".join([*sst2[:2], "", *sst2[2:]]) + "\n\n", encoding="utf-8")
    task = get_task("sst2")
    examples, left_out = read_examples(task, path)  # on_bad_row=raise: not an error
    assert (len(examples), left_out) == (len(sst2) - 1, 2)
    stream = ExampleStream(task, path)
    assert len(list(stream)) == len(sst2) - 1 and (stream.blank, stream.skipped) == (2, 0)
    assert stream.notice() == f"{path}: skipped 2 blank lines"
    # with a bad row skipped too, the notice names both
    path.write_text("\n".join([*sst2, "", "a row without a label"]) + "\n", encoding="utf-8")
    stream = ExampleStream(task, path, on_error="skip")
    list(stream)
    assert stream.notice() == (
        f"{path}: skipped 1 blank line and 1 malformed row (task.on_bad_row=skip)"
    )


def test_official_files_with_a_final_newline_have_no_blank_line():
    for path in OFFICIAL:
        if not path.name.startswith("test"):
            assert path.read_bytes().endswith(b"\n")
            assert read_examples(get_task(path.parent.name), path)[1] == 0, path


def test_blank_lines_before_a_header_and_in_every_reader(tmp_path):
    qnli = tmp_path / "qnli.tsv"  # the header is still found and checked
    qnli.write_text("\n" + (GLUE / "QNLI" / "dev.tsv").read_text(encoding="utf-8"))
    assert read_examples(get_task("qnli"), qnli)[1] == 1
    sick = tmp_path / "SICK.txt"
    row = ["1", "A man plays.", "A man is playing.", "ENTAILMENT", "4.5", "", "", "TRAIN"]
    sick.write_text("\n" + "\t".join(SICK_COLUMNS) + "\n" + "\t".join(row + [""] * 4) + "\n\n")
    assert read_examples(get_task("sick-e"), sick)[1] == 2
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text('{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n')
    csv = tmp_path / "dev.csv"
    csv.write_text("text,label\ngood,pos\n\nbad,neg\n")
    for name, path in (("jsonl", jsonl), ("csv", csv)):
        examples, left_out = read_examples(get_task(name, labels=["neg", "pos"]), path)
        assert (len(examples), left_out) == (2, 1), name
    tnews = tmp_path / "dev.json"
    row = {"label": "102", "label_desc": "news_entertainment", "sentence": "a film"}
    tnews.write_text(json.dumps(row) + "\n\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert read_examples(get_task("tnews"), tnews)[1] == 1
    (tmp_path / "labels.json").write_text("\n")  # a blank line in labels.json is no entry
    with pytest.raises(UserError, match="label list differs"):
        read_examples(get_task("tnews"), tnews)


def test_training_data_warns_naming_the_file_and_the_count(tmp_path, tiny_bert_dir, capsys):
    data_dir = tmp_path / "SST-2"
    data_dir.mkdir()
    for split in ("train.tsv", "dev.tsv"):
        lines = (GLUE / "SST-2" / split).read_text(encoding="utf-8").splitlines()
        text = "\n".join([lines[0], "", *lines[1:]]) if split == "dev.tsv" else "\n".join(lines)
        (data_dir / split).write_text(text + "\n", encoding="utf-8")
    cfg = TaskConfig(name="sst2", data_dir=str(data_dir))
    data = load_task_data(cfg, tiny_bert_dir, seed=0)
    assert data.skipped == {str(data_dir / "dev.tsv"): 1}
    assert len(data.dev["dev"]) == 3
    one_line(capsys, f"{data_dir / 'dev.tsv'}: skipped 1 blank line")
