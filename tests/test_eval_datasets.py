"""Evaluation sets: every file format on the real sets in ../shared/datasets, field detection, bad rows,
the shipped demo set, and the Hugging Face Hub path (cached at the pinned revision, or offline)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED
from scripted_server import SilentPort

from r1cli.errors import UsageError
from r1cli.evaluation.datasets import (
    HUB_SETS,
    Problem,
    gsm8k_reference,
    load_dataset,
    open_dataset,
    parse_field_map,
    reference_text,
)

DATA = SHARED / "datasets"
AIME = DATA / "aime24.jsonl"
AMC = DATA / "amc23.jsonl"
GSM8K = DATA / "gsm8k-test-first50.jsonl"


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("path,count,first", [
    (AIME, 30, Problem("60", _records(AIME)[0]["problem"], "204")),
    (AMC, 40, Problem("0", _records(AMC)[0]["problem"], "27")),  # "problem" wins over its "question" copy
    (GSM8K, 50, Problem("0", _records(GSM8K)[0]["question"], "18")),  # "#### 18" at the end of the solution
])
def test_the_real_sets_load_with_their_fields_detected(path, count, first):
    problems = load_dataset(path)
    assert len(problems) == count
    assert problems[0] == first
    assert len({p.id for p in problems}) == count


def test_every_gsm8k_reference_is_its_final_number():
    for rec, problem in zip(_records(GSM8K), load_dataset(GSM8K)):
        tail = rec["answer"].rsplit("####", 1)[1].strip()
        assert problem.reference == tail.replace(",", "")
        assert float(problem.reference) == float(tail.replace(",", ""))


def test_amc_float_answers_lose_the_spurious_point_zero():
    refs = [p.reference for p in load_dataset(AMC)]
    assert all(not r.endswith(".0") for r in refs)
    assert refs == [reference_text(rec["answer"]) for rec in _records(AMC)]


@pytest.mark.parametrize("fmt", ["json", "json-wrapped", "csv", "tsv", "parquet", "jsonl-as-json"])
def test_every_format_gives_the_same_problems(tmp_path, fmt):
    records = _records(AIME)
    path = tmp_path / f"aime.{fmt.split('-')[0]}"
    if fmt == "json":
        path.write_text(json.dumps(records), encoding="utf-8")
    elif fmt == "json-wrapped":
        path.write_text(json.dumps({"test": records}), encoding="utf-8")
    elif fmt == "jsonl-as-json":  # JSON Lines saved with a .json name, as people do
        path.write_text(AIME.read_text(encoding="utf-8"), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow
        import pyarrow.parquet as pq

        pq.write_table(pyarrow.Table.from_pylist(records), path)
    assert load_dataset(path) == load_dataset(AIME)


def test_the_demo_set_is_what_the_demo_model_learned():
    learned = json.loads((ROOT / "r1cli" / "demo_model" / "questions.json").read_text(encoding="utf-8"))
    ds = open_dataset("demo")
    assert [(p.question, p.reference) for p in ds.problems] == [(q["question"], q["answer"]) for q in learned]
    assert ds.source == "builtin" and len(ds.sha256) == 64


def test_limit_takes_the_first_problems():
    assert load_dataset(GSM8K, limit=3) == load_dataset(GSM8K)[:3]


def _with_bad_line(tmp_path, line_no: int, bad: str):
    lines = GSM8K.read_text(encoding="utf-8").splitlines()[:6]
    lines.insert(line_no - 1, bad)
    path = tmp_path / "gsm8k-bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bad,why", [
    ('{"question": "What is 1+1?", "answer": ', "not valid JSON"),
    ('{"question": "What is 1+1?"}', "no reference answer"),
    ('{"text": "What is 1+1?", "answer": "2"}', "no question field"),
    ('{"question": "   ", "answer": "2"}', "the question (question) is empty"),
    ('["What is 1+1?", "2"]', "expected an object"),
])
def test_a_bad_row_is_named_by_its_line(tmp_path, bad, why):
    path = _with_bad_line(tmp_path, 4, bad)
    with pytest.raises(UsageError) as err:
        load_dataset(path)
    assert f"line 4: {why}" in err.value.message
    assert "\n" not in err.value.message
    assert "--skip-bad" in err.value.hint
    ds = open_dataset(path, skip_bad=True)
    assert len(ds.problems) == 6
    assert [b.where for b in ds.skipped] == ["line 4"]


def test_a_repeated_id_is_a_bad_row(tmp_path):
    rows = _records(AIME)[:3]
    rows.append(dict(rows[0]))
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(UsageError, match="row 4: id '60' repeats"):
        load_dataset(path)


def test_a_csv_row_with_extra_cells_is_named(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("question,answer\nWhat is 2+3?,5\nWhat is 7*6?,42,oops\n", encoding="utf-8")
    with pytest.raises(UsageError, match="row 2: 3 cells for 2 header fields"):
        load_dataset(path)
    assert load_dataset(path, skip_bad=True) == [Problem("1", "What is 2+3?", "5")]


def test_field_map_names_the_columns(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text("\n".join(json.dumps({"key": f"q{i}", "text": r["problem"], "label": r["answer"]})
                              for i, r in enumerate(_records(AIME)[:4])) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no question field"):
        load_dataset(path)
    problems = load_dataset(path, field_map=parse_field_map("question=text,answer=label,id=key"))
    assert [p.id for p in problems] == ["q0", "q1", "q2", "q3"]
    assert problems[0].reference == "204"


@pytest.mark.parametrize("spec", ["question", "colour=text", "question=", "question=a,,answer=b"])
def test_bad_field_maps_are_usage_errors(spec):
    with pytest.raises(UsageError, match="--field-map"):
        parse_field_map(spec)


def test_a_solution_with_a_box_is_the_reference_when_no_answer_field(tmp_path):
    from r1cli.answers import equivalent

    records = _records(AIME)[1:8]  # the first AIME solution has no \boxed{} at all
    path = tmp_path / "solutions.jsonl"
    path.write_text("\n".join(json.dumps({"problem": r["problem"], "solution": r["solution"]}) for r in records) + "\n",
                    encoding="utf-8")
    problems = load_dataset(path)
    assert [p.reference for p in problems][:3] == ["\\textbf{(113) }", "371", "\\textbf{(385) }"]
    assert all(equivalent(p.reference, r["answer"]) for p, r in zip(problems, records))
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"problem": _records(AIME)[0]["problem"], "solution": _records(AIME)[0]["solution"]}))
    with pytest.raises(UsageError, match="line 1: no reference answer"):
        load_dataset(first)


@pytest.mark.parametrize("text,expected", [
    ("#### 1,234", "1234"), ("so she pays $2 * 9 = $18\n#### 18", "18"), ("#### -3", "-3"),
    ("#### 1,000,000.5", "1000000.5"), ("#### $70,000", "70000"), ("#### 3/4", "3/4"), ("no mark", None),
])
def test_gsm8k_reference(text, expected):
    assert gsm8k_reference(text) == expected


@pytest.mark.parametrize("value,expected", [(27.0, "27"), (2.5, "2.5"), (204, "204"), (" 204 ", "204"),
                                            (["17"], "17"), (None, ""), (True, ""), (float("nan"), "")])
def test_reference_text(value, expected):
    assert reference_text(value) == expected


@pytest.mark.parametrize("name,why", [("nosuchset", "no dataset named"), ("notes.txt", "unknown format")])
def test_unknown_names_and_formats(tmp_path, name, why):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("What is 2+3?\n")
        name = str(tmp_path / name)
    with pytest.raises(UsageError, match=why):
        load_dataset(name)


def _in_subprocess(code: str, hf_home, **env) -> subprocess.CompletedProcess:
    """huggingface_hub reads HF_HOME once, at import: a fresh interpreter per cache."""
    full = {**os.environ, "HF_HOME": str(hf_home), **env}
    full.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=full, cwd=ROOT)


def test_a_hub_set_cached_at_its_pinned_revision_loads_offline(tmp_path):
    import pyarrow
    import pyarrow.parquet as pq

    hub = HUB_SETS["aime24"]
    # The layout huggingface_hub keeps: datasets--OWNER--NAME/snapshots/<commit>/<file>.
    snapshot = tmp_path / "hub" / f"datasets--{hub.repo.replace('/', '--')}" / "snapshots" / hub.revision
    target = snapshot / hub.filename
    target.parent.mkdir(parents=True)
    pq.write_table(pyarrow.Table.from_pylist(_records(AIME)), target)
    proc = _in_subprocess("import json; from r1cli.evaluation.datasets import open_dataset; d = open_dataset('aime24');"
                          "print(json.dumps([d.source, d.revision, d.path, len(d.problems), d.problems[0].reference]))",
                          tmp_path, HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr
    source, revision, path, count, first = json.loads(proc.stdout)
    assert (source, revision, path, count, first) == (f"hub:{hub.repo}/{hub.filename}", hub.revision, str(target),
                                                      30, "204")


@pytest.mark.parametrize("name", sorted(HUB_SETS))
def test_an_uncached_hub_set_offline_is_one_line_and_exit_2(tmp_path, name, r1):
    """Offline means no try at the Hub at all (no minute of retries): not one connection to HF_ENDPOINT."""
    hub = SilentPort()  # HF_ENDPOINT at a Hub that never answers
    try:
        proc = r1("eval", name, "--base-url", "http://127.0.0.1:9/v1", timeout=60,
                  env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_ENDPOINT": hub.url})
    finally:
        hub.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"r1: error: {name} ({HUB_SETS[name].repo}@") and "not in the Hugging Face cache" in lines[0]
    assert lines[1].startswith("  fix: ") and len(lines) == 2
    assert hub.connections == 0


def test_a_hub_that_never_answers_is_one_try_and_one_line(tmp_path, r1):
    """huggingface_hub retries a failed HEAD five times with back-off (397 s, then 'has no ...parquet', when
    eval left it to hf_hub_download): r1 asks once, with the metadata timeout, and says the Hub did not answer."""
    hub = SilentPort()  # HF_ENDPOINT at a Hub that never answers
    set_ = HUB_SETS["aime24"]
    try:
        proc = r1("eval", "aime24", "--base-url", "http://127.0.0.1:9/v1", timeout=120,
                  env={"HF_HOME": str(tmp_path), "HF_ENDPOINT": hub.url, "HF_HUB_ETAG_TIMEOUT": "2"})
    finally:
        hub.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"r1: error: aime24 ({set_.repo}@{set_.revision[:7]}) could not be downloaded from the Hub ({hub.url}): timed out",
        "  fix: check the network (a proxy: HTTPS_PROXY) or HF_ENDPOINT, or pass the set as a file"]
    heads = [r for r in hub.requests if r.startswith("HEAD ")]
    assert heads == [f"HEAD /datasets/{set_.repo}/resolve/{set_.revision}/{set_.filename} HTTP/1.1"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import pyarrow
    import pyarrow.parquet as pq

    path = tmp_path / "aime.parquet"
    pq.write_table(pyarrow.Table.from_pylist(_records(AIME)), path)
    # As on an install without pyarrow: importing it fails.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UsageError) as err:
        load_dataset(path)
    assert err.value.message == "aime.parquet: reading Parquet needs pyarrow, which is not installed"
    assert "pip install 'r1cli[eval]'" in err.value.hint
