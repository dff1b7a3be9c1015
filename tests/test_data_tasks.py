"""Task registry and readers: every GLUE layout, the generic jsonl/csv formats, and bad rows."""

from pathlib import Path

import pytest

from tinybert.data import KNOWN_TASKS, Example, get_task, read_examples
from tinybert.errors import UserError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE = FIXTURES / "glue"
BAD = FIXTURES / "data" / "bad"
SHARED_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"

# task, official folder, counts per split file, first train example (text_a, text_b, label)
CASES = [
    ("sst2", "SST-2", {"train.tsv": 4, "dev.tsv": 3},
     ("a warm , funny and thoroughly charming little film ", None, "1")),
    ("cola", "CoLA", {"train.tsv": 4, "dev.tsv": 3},
     ("The cat slept on the warm windowsill.", None, "1")),
    ("mrpc", "MRPC", {"train.tsv": 3, "dev.tsv": 3},
     ("The company said profits rose 5 percent in the quarter.",
      "Quarterly profit grew by 5 percent, the company said.", "1")),
    ("qqp", "QQP", {"train.tsv": 4, "dev.tsv": 3},
     ("How do I learn to cook rice?", "What is the best way to cook rice?", "1")),
    ("stsb", "STS-B", {"train.tsv": 4, "dev.tsv": 3},
     ("A man is playing a guitar.", "A man plays the guitar.", 5.0)),
    ("mnli", "MNLI", {"train.tsv": 4, "dev_matched.tsv": 3, "dev_mismatched.tsv": 3},
     ("The door was locked all night.", "Nobody could open the door.", "entailment")),
    ("qnli", "QNLI", {"train.tsv": 3, "dev.tsv": 3},
     ("What is the capital of France?", "Paris is the capital and largest city of France.",
      "entailment")),
    ("rte", "RTE", {"train.tsv": 3, "dev.tsv": 3},
     ("The firm hired 200 new workers in March.", "The firm hired workers.", "entailment")),
    ("wnli", "WNLI", {"train.tsv": 3, "dev.tsv": 3},
     ("The trophy did not fit in the case because it was too big.", "The trophy was too big.",
      "1")),
]  # fmt: skip


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name,folder,counts,first", CASES, ids=[c[0] for c in CASES])
def test_glue_task_reads_its_official_files(name, folder, counts, first):
    task = get_task(name)
    assert set(counts) == {task.train_split, *task.dev_splits.values()}
    for split, n in counts.items():
        examples, skipped = read_examples(task, GLUE / folder / split)
        assert (len(examples), skipped) == (n, 0)
        for ex in examples:
            assert ex.text_a.strip() and (ex.text_b is None) == (first[1] is None)
            assert (
                ex.label in task.labels if not task.is_regression else isinstance(ex.label, float)
            )
    ex = read_examples(task, GLUE / folder / task.train_split)[0][0]
    assert (ex.text_a, ex.text_b, ex.label) == first


def test_task_specs_follow_glue_reporting():
    mrpc = get_task("mrpc")
    assert mrpc.metrics == ("accuracy", "f1", "acc_and_f1") and mrpc.main_metric == "acc_and_f1"
    assert get_task("qqp").main_metric == "acc_and_f1"  # a constant predictor cannot win it
    assert get_task("cola").metrics == ("mcc",)
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.labels == () and stsb.main_metric == "pearson"
    mnli = get_task("mnli")
    assert mnli.labels == ("contradiction", "entailment", "neutral")
    assert mnli.dev_splits == {
        "dev_matched": "dev_matched.tsv",
        "dev_mismatched": "dev_mismatched.tsv",
    }
    assert get_task("qnli").labels == ("entailment", "not_entailment")


def test_task_names_accept_official_spellings():
    assert get_task("SST-2") == get_task("sst2")
    assert get_task("STS-B").name == "stsb" and get_task("MNLI").name == "mnli"


def test_unknown_task_lists_known_ones():
    with pytest.raises(UserError, match="unknown task 'sst3'.*sst2.*mnli.*jsonl"):
        get_task("sst3")
    assert "csv" in KNOWN_TASKS


def test_generic_tasks_need_labels_or_regression():
    with pytest.raises(UserError, match="task.labels"):
        get_task("jsonl")
    spec = get_task("jsonl", labels=["neg", "pos"])
    assert spec.labels == ("neg", "pos") and spec.train_split == "train.jsonl"
    assert spec.dev_splits == {"dev": "dev.jsonl"} and spec.main_metric == "accuracy"
    reg = get_task("csv", regression=True)
    assert reg.is_regression and reg.labels == () and reg.train_split == "train.csv"
    assert get_task("csv", labels=["a", "b", "c"]).metrics == ("accuracy",)
    for bad in (["a"], ["a", "a"], ["a", ""]):
        with pytest.raises(UserError, match="distinct"):
            get_task("jsonl", labels=bad)
    with pytest.raises(UserError, match="not both"):
        get_task("jsonl", labels=["a", "b"], regression=True)


def test_glue_tasks_reject_custom_labels_and_regression():
    with pytest.raises(UserError, match="fixed labels"):
        get_task("sst2", labels=["neg", "pos"])
    with pytest.raises(UserError, match="classification"):
        get_task("qnli", regression=True)
    assert get_task("sst2", labels=["0", "1"]).labels == ("0", "1")


# --------------------------------------------------------------------------- GLUE details


def test_quotes_are_text_not_csv_quoting():
    sst = read_examples(get_task("sst2"), GLUE / "SST-2" / "train.tsv")[0]
    assert sst[2].text_a == '" brilliant " is not the word i would use '
    cola = read_examples(get_task("cola"), GLUE / "CoLA" / "dev.tsv")[0]
    assert cola[2].text_a == '"Go home," he said.'


def test_sources_are_one_based_physical_lines():
    sst = read_examples(get_task("sst2"), GLUE / "SST-2" / "dev.tsv")[0]
    assert sst[0].source == f"{GLUE / 'SST-2' / 'dev.tsv'}:2"  # line 1 is the header
    cola = read_examples(get_task("cola"), GLUE / "CoLA" / "train.tsv")[0]
    assert cola[0].source.endswith("train.tsv:1")  # CoLA has no header
    assert [e.label for e in cola] == ["1", "0", "1", "0"]


def test_mrpc_byte_order_mark_and_mnli_dev_gold_label():
    mrpc = read_examples(get_task("mrpc"), GLUE / "MRPC" / "train.tsv")[0]
    assert [e.label for e in mrpc] == ["1", "0", "1"]
    dev = read_examples(get_task("mnli"), GLUE / "MNLI" / "dev_matched.tsv")[0]
    assert [e.label for e in dev] == ["contradiction", "entailment", "neutral"]  # last column


def test_stsb_scores_are_floats():
    dev = read_examples(get_task("stsb"), GLUE / "STS-B" / "dev.tsv")[0]
    assert [e.label for e in dev] == [4.25, 0.4, 4.6]


def test_crlf_line_endings(tmp_path):
    path = _write(tmp_path / "dev.tsv", "sentence\tlabel\r\ngood one \t1\r\nbad one \t0\r\n")
    examples, _ = read_examples(get_task("sst2"), path)
    assert [(e.text_a, e.label) for e in examples] == [("good one ", "1"), ("bad one ", "0")]


# --------------------------------------------------------------------------- bad rows


def test_malformed_qqp_row_names_file_line_and_value():
    path = BAD / "qqp_train.tsv"
    with pytest.raises(UserError) as err:
        read_examples(get_task("qqp"), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: expected 6 tab-separated columns")
    assert "found 4" in msg and "Why do cats purr?" in msg and "on_bad_row=skip" in msg


def test_skip_drops_and_counts_bad_rows():
    examples, skipped = read_examples(get_task("qqp"), BAD / "qqp_train.tsv", on_error="skip")
    assert skipped == 3  # short row, empty question2, unknown label
    assert [e.source.rsplit(":", 1)[1] for e in examples] == ["2", "4"]


@pytest.mark.parametrize(
    "body,pattern",
    [
        ("sentence\tlabel\nfine \t1\n \t0\n", r":3: empty text in column 1"),
        ("sentence\tlabel\nfine \t1\nodd \t2\n", r":3: unknown label '2'; allowed: 0, 1"),
        ("sentence\tlabel\nfine \t1\ntoo\tmany\t1\n", r":3: expected 2 tab-separated.*found 3"),
    ],
    ids=["empty-text", "unknown-label", "columns"],
)
def test_each_bad_row_kind(tmp_path, body, pattern):
    path = _write(tmp_path / "train.tsv", body)
    with pytest.raises(UserError, match=pattern):
        read_examples(get_task("sst2"), path)
    assert read_examples(get_task("sst2"), path, on_error="skip")[1] == 1


def test_bad_regression_score():
    with pytest.raises(UserError, match=r"stsb_dev.tsv:3: score 'n/a' is not a number"):
        read_examples(get_task("stsb"), BAD / "stsb_dev.tsv")
    assert read_examples(get_task("stsb"), BAD / "stsb_dev.tsv", on_error="skip")[1] == 1


def test_invalid_utf8_row_is_a_bad_row(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(b"sentence\tlabel\nok \t1\nbad \xff byte \t0\n")
    with pytest.raises(UserError, match=r"dev.tsv:3: not UTF-8"):
        read_examples(get_task("sst2"), path)
    assert read_examples(get_task("sst2"), path, on_error="skip")[1] == 1


def test_wrong_header_and_test_split_are_rejected_even_with_skip():
    with pytest.raises(UserError, match=r":1: not the official GLUE MNLI layout.*gold_label"):
        read_examples(get_task("mnli"), BAD / "mnli_wrong_header.tsv", on_error="skip")
    with pytest.raises(UserError, match="test files have no labels"):
        read_examples(get_task("sst2"), GLUE / "SST-2" / "test.tsv", on_error="skip")


def test_missing_file_says_what_was_expected(tmp_path):
    with pytest.raises(UserError, match=r"train.tsv: not found; expected the official GLUE SST-2"):
        read_examples(get_task("sst2"), tmp_path / "train.tsv")
    with pytest.raises(UserError, match="is a directory"):
        read_examples(get_task("sst2"), tmp_path)


def test_no_examples_at_all_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no usable examples"):
        read_examples(get_task("sst2"), _write(tmp_path / "dev.tsv", "sentence\tlabel\n"))


def test_on_error_value_is_checked():
    with pytest.raises(UserError, match="'raise' or 'skip'"):
        read_examples(get_task("sst2"), GLUE / "SST-2" / "dev.tsv", on_error="ignore")


# --------------------------------------------------------------------------- jsonl / csv


def test_jsonl_reads_pairs_and_ignores_extra_keys():
    task = get_task("jsonl", labels=["negative", "positive"])
    examples, skipped = read_examples(task, FIXTURES / "data" / "jsonl" / "train.jsonl")
    assert skipped == 0 and len(examples) == 3
    assert examples[1] == Example(
        "the dog ran away", "a dog was running", "negative", examples[1].source
    )
    assert examples[0].text_b is None and examples[2].text_a == 'a "quoted" film'


def test_jsonl_bad_rows():
    task = get_task("jsonl", labels=["negative", "positive"])
    path = FIXTURES / "data" / "jsonl" / "dev.jsonl"
    with pytest.raises(UserError, match=r"dev.jsonl:3: unknown label 'neutral'; allowed: negative"):
        read_examples(task, path)
    examples, skipped = read_examples(task, path, on_error="skip")
    assert [e.label for e in examples] == ["positive", "negative"]
    # unknown label, empty text, invalid JSON, and the blank line at the end (counted, issue 16)
    assert skipped == 4


def test_jsonl_regression_and_numeric_labels(tmp_path):
    task = get_task("jsonl", regression=True)
    examples, skipped = read_examples(task, FIXTURES / "data" / "jsonl" / "scores.jsonl", "skip")
    assert [e.label for e in examples] == [0.5, 4.25] and skipped == 1
    path = _write(
        tmp_path / "train.jsonl", '{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n'
    )
    examples, _ = read_examples(get_task("jsonl", labels=["0", "1"]), path)
    assert [e.label for e in examples] == ["1", "0"]


def test_csv_uses_real_quoting_and_header_names():
    task = get_task("csv", labels=["0", "1"])
    examples, _ = read_examples(task, FIXTURES / "data" / "csv" / "train.csv")
    assert [e.text_a for e in examples] == ["hello, world", "the cat", 'she said "hi"']
    assert examples[1].text_b == "a cat\nsat down"
    assert [e.source.rsplit(":", 1)[1] for e in examples] == ["2", "3", "5"]  # start lines


def test_csv_bad_rows_and_header(tmp_path):
    task = get_task("csv", labels=["0", "1"])
    path = FIXTURES / "data" / "csv" / "dev.csv"
    with pytest.raises(
        UserError, match=r"dev.csv:4: expected 3 columns like the header but found 2"
    ):
        read_examples(task, path)
    examples, skipped = read_examples(task, path, on_error="skip")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("bad film", None, "0"),
        ("good film", None, "1"),
    ]
    assert skipped == 2
    with pytest.raises(UserError, match="must name the columns text"):
        read_examples(task, _write(tmp_path / "x.csv", "sentence,label\nhi,1\n"))


# --------------------------------------------------------------------------- real data


@pytest.mark.shared
def test_real_glue_files():
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE}")
    sst2 = get_task("sst2")
    train, skipped = read_examples(sst2, SHARED_GLUE / "SST-2" / "train.tsv")
    assert (len(train), skipped) == (67349, 0)
    assert len(read_examples(sst2, SHARED_GLUE / "SST-2" / "dev.tsv")[0]) == 872
    qnli, skipped = read_examples(get_task("qnli"), SHARED_GLUE / "QNLI" / "dev.tsv")
    assert (len(qnli), skipped) == (5463, 0) and all(e.text_b for e in qnli)
    assert {e.label for e in qnli} == {"entailment", "not_entailment"}


# --------------------------------------------------------------------------- SICK

SICK = FIXTURES / "sick"
SHARED_SICK = SHARED_GLUE.parent / "sick" / "SICK.txt"


@pytest.mark.parametrize("name", ["sick-e", "SICK-R"])
def test_sick_splits_are_rows_of_one_file(name):
    """SICK.txt holds every split; TRAIN/TRIAL/TEST rows are chosen by its SemEval_set column."""
    task = get_task(name)
    assert task.train_split == "SICK.txt#TRAIN"
    assert task.dev_splits == {"trial": "SICK.txt#TRIAL", "test": "SICK.txt#TEST"}
    counts = {f: len(read_examples(task, SICK / f)[0]) for f in ("SICK.txt#TRAIN",
              "SICK.txt#TRIAL", "SICK.txt#TEST", "SICK.txt")}  # fmt: skip
    assert counts == {"SICK.txt#TRAIN": 3, "SICK.txt#TRIAL": 1, "SICK.txt#TEST": 2, "SICK.txt": 6}
    first = read_examples(task, SICK / task.train_split)[0][0]
    label = 4.7 if task.is_regression else "ENTAILMENT"
    assert (first.text_a, first.text_b, first.label) == (
        "A group of kids is playing in a yard",
        "A group of boys is playing in a yard",
        label,
    )


def test_sick_tasks_are_nli_and_relatedness():
    e, r = get_task("sick-e"), get_task("sick-r")
    assert e.labels == ("ENTAILMENT", "NEUTRAL", "CONTRADICTION") and e.metrics == ("accuracy",)
    assert r.is_regression and r.score_range == (1.0, 5.0) and r.main_metric == "pearson"
    with pytest.raises(UserError, match="use task.name: sick-r"):
        get_task("sick-e", regression=True)
    with pytest.raises(UserError, match="fixed labels"):
        get_task("sick-e", labels=["a", "b", "c"])


def test_sick_bad_layout_and_rows_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"SICK.txt:1: not the SICK layout"):
        read_examples(get_task("sick-e"), _write(tmp_path / "SICK.txt", "a\tb\tc\n"))
    header = (SICK / "SICK.txt").read_text(encoding="utf-8").splitlines()[0]
    row = "\t".join(["7", "A man sings", "A man is singing", "MAYBE", "4.0", *["x"] * 6, "TRAIN"])
    short = "8\tA man sings\tENTAILMENT"
    path = _write(tmp_path / "SICK.txt", f"{header}\n{row}\n{short}\n")
    with pytest.raises(UserError, match=r"SICK.txt:2: unknown label 'MAYBE'"):
        read_examples(get_task("sick-e"), tmp_path / "SICK.txt#TRAIN")
    with pytest.raises(UserError, match=r"SICK.txt:3: expected 12 tab-separated columns"):
        read_examples(get_task("sick-r"), path.with_name("SICK.txt#TRAIN"))
    with pytest.raises(UserError, match=r"SICK.txt: not found; expected the official SICK"):
        read_examples(get_task("sick-e"), tmp_path / "none" / "SICK.txt#TRAIN")


@pytest.mark.skipif(not SHARED_SICK.is_file(), reason="../shared/data/sick/SICK.txt not present")
def test_sick_official_file_counts():
    task = get_task("sick-e")
    counts = [len(read_examples(task, SHARED_SICK.with_name(f))[0]) for f in
              (task.train_split, *task.dev_splits.values())]  # fmt: skip
    assert counts == [4439, 495, 4906]
