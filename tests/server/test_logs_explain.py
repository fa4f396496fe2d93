"""`r1 logs --explain [FILE|-]` on every real vLLM log: by file, by stdin through a real pipe, the running
server's own log, logs without a failure, several starts in one log, and files that cannot be read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from conftest import run_r1
from test_logs import CASES, LOGS, _expected_cause, _ids, _lines

from r1cli.cli import full_app, run
from r1cli.server import state
from r1cli.server.logs import MILESTONES, STAGE_KEYS, Stage, explain

READY = "no failure found; last stage reached: API up (application startup complete)\n"
# The real ready logs end as their server was stopped (`r1 stop`, the test's end: SIGTERM), and say so.
STOPPED_READY = "no failure found: stopped by a signal (SIGTERM); last stage reached: API up (application startup complete)\n"
GPU_READY = next(p for p in LOGS if p.name == "gpu-0.25-ready-h100.log")
PORT_IN_USE = next(p for p in LOGS if p.name == "cpu-0.32-fail-port-in-use.log")


def _explain_out(*args: str, capsys) -> tuple[int, str, str]:
    code = run(["logs", "--explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", LOGS, ids=_ids)
def test_explain_a_log_file(path: Path, capsys):
    code, out, _ = _explain_out(str(path), capsys=capsys)
    expected = _expected_cause(path.name)
    assert code == (0 if expected is None else 6)  # 6: a failure was found (FAILURE_FOUND)
    if expected is None:
        assert out == (STOPPED_READY if b"trigger received signal=SIGTERM" in path.read_bytes() else READY)
        return
    result = explain(_lines(path))
    if expected != "?":
        assert result.fatal.cause == expected
    lines = out.splitlines()
    assert lines[0] == f"cause: {result.fatal.message}"
    assert 1 <= len(result.evidence) <= 3 and lines[1:-2] == [f"  | {line}" for line in result.evidence]
    assert lines[-2] == f"fix: {result.fatal.hint}"
    assert lines[-1] == f"last stage before it: {MILESTONES[result.stage.key]} ({result.stage.label})"


@pytest.mark.parametrize("path", LOGS, ids=_ids)
def test_explain_json(path: Path, capsys):
    code, out, _ = _explain_out(str(path), "--json", capsys=capsys)
    data = json.loads(out)
    expected = _expected_cause(path.name)
    assert code == (0 if expected is None else 6)
    assert data["log"] == str(path) and data["starts"] == 1
    raw = path.read_bytes()
    assert data["lines"] == raw.count(b"\n") + (not raw.endswith(b"\n"))  # lines end at \n only, as r1 reads
    assert data["facts"]["version"] in ("0.32.0", "0.25.0")  # the vLLM releases these logs came from
    if expected is None:
        assert data["failed"] is False and data["cause"] is None and data["evidence"] == [] and data["fix"] is None
        assert data["stage"] == {"key": "app_started", "milestone": "API up", "label": "application startup complete"}
        return
    assert data["failed"] is True and data["cause"] == (expected if expected != "?" else data["cause"])
    assert data["message"] and data["fix"] and 1 <= len(data["evidence"]) <= 3


@pytest.mark.parametrize("path", LOGS, ids=_ids)
def test_explain_reads_stdin_through_a_pipe(path: Path, capsys):
    """`kubectl logs pod | r1 logs --explain -`: a real process reading a real pipe says what the file mode says."""
    code, from_file, _ = _explain_out(str(path), capsys=capsys)
    proc = run_r1("logs", "--explain", "-", input=path.read_bytes(), timeout=60)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.decode() == from_file and proc.stderr == b""


def test_explain_the_running_servers_log(demo_server):
    record = state.load(demo_server.port)
    proc = run_r1("logs", "--explain", "--port", str(demo_server.port), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == READY
    data = json.loads(run_r1("logs", "--explain", "--json", "--port", str(demo_server.port), check=True).stdout)
    assert data["log"] == record.log_path and data["failed"] is False
    assert data["facts"]["port"] == demo_server.port and data["facts"]["max_model_len"] == 1024


# Where a start that is still under way (or was cut off) stands: the line that ends each milestone.
MILESTONE_LINES = {
    "loaded": "Model loading took",
    "kv_cache": "Maximum concurrency for",
    "graphs": "Graph capturing finished",
    "api_server": "Starting vLLM",
    "app_started": "Application startup complete",
}


@pytest.mark.parametrize("key, marker", MILESTONE_LINES.items())
def test_a_log_without_failure_names_the_last_stage_reached(key, marker, tmp_path, capsys):
    lines = GPU_READY.read_text(encoding="utf-8").split("\n")
    cut = next(i for i, line in enumerate(lines) if marker in line)
    log = tmp_path / "partial.log"
    log.write_text("\n".join(lines[: cut + 1]) + "\n", encoding="utf-8")
    code, out, _ = _explain_out(str(log), capsys=capsys)
    assert code == 0
    assert out.startswith(f"no failure found; last stage reached: {MILESTONES[key]} (")
    assert json.loads(_explain_out(str(log), "--json", capsys=capsys)[1])["stage"]["key"] == key


def test_a_file_that_is_not_a_vllm_log(tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("hello\nworld\n")
    code, out, _ = _explain_out(str(other), capsys=capsys)
    assert code == 0 and out == "no failure found, and no vLLM startup line in 2 lines: is this vLLM's log?\n"


def test_the_last_start_in_a_log_is_judged(tmp_path, capsys):
    """r1's own log (and `docker logs` of a restarted container) append one start after another."""
    ready, failed = GPU_READY.read_bytes(), PORT_IN_USE.read_bytes()
    (tmp_path / "fail-then-ready.log").write_bytes(failed + ready)
    (tmp_path / "ready-then-fail.log").write_bytes(ready + failed)
    code, out, _ = _explain_out(str(tmp_path / "fail-then-ready.log"), capsys=capsys)
    assert code == 0 and out == STOPPED_READY
    data = json.loads(_explain_out(str(tmp_path / "ready-then-fail.log"), "--json", capsys=capsys)[1])
    assert data["cause"] == "port_in_use" and data["starts"] == 2


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_an_unreadable_file_is_exit_2(make, tmp_path):
    path = tmp_path / "nope.log"
    if make == "directory":
        path.mkdir()
    proc = run_r1("logs", "--explain", str(path), timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[0].startswith(f"r1: error: cannot read the log {path}: ")
    assert "Traceback" not in proc.stderr


def test_no_server_explains_the_newest_log_r1_kept(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("R1_HOME", str(tmp_path))
    assert _explain_out(capsys=capsys)[0] == 3  # nothing running, nothing kept
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "logs" / "server-8011.log").write_bytes(PORT_IN_USE.read_bytes())
    code, out, err = _explain_out(capsys=capsys)
    assert code == 6 and out.startswith("cause: port 8011 is already in use")
    assert err == f"r1: no r1 server is running; explaining the newest log r1 kept, {tmp_path}/logs/server-8011.log\n"


def test_file_and_json_go_with_explain(capsys):
    assert run(["logs", str(PORT_IN_USE)]) == 2
    assert capsys.readouterr().err.startswith("r1: error: FILE and --json go with --explain")


def test_every_fix_names_r1_flags_and_commands_that_exist():
    """The hints serve and --explain print, from every real log and every fatal line case."""
    from test_logs import ARGS

    hints = [explain(_lines(p)).fatal.hint for p in LOGS if _expected_cause(p.name) is not None]
    hints += [explain([ARGS, line]).fatal.hint for _, line, *_ in CASES]
    command = typer.main.get_command(full_app())
    flags = {opt for p in command.commands["serve"].params for opt in p.opts}
    for hint in hints:
        assert "--gpu-memory-utilization" not in hint and "--quantization" not in hint, hint
        for name in re.findall(r"`r1 ([a-z]+)", hint):
            assert name in command.commands, hint
        before_passthrough = hint.split("-- ", 1)[0] if "`r1 serve ... -- " in hint else hint
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", before_passthrough):
            assert option in flags, hint


def test_milestones_cover_every_stage():
    assert set(MILESTONES) == set(STAGE_KEYS)
    assert isinstance(explain([]).stage, (Stage, type(None)))


# --- a stop asked for is not a failure (issue 32, item 4) -----------------------------------------------------
# A foreground `r1 serve` Ctrl-C'd while vLLM starts: r1 sends SIGTERM to vLLM's process group. The engine logs
# the signal (the real line of cpu-0.32-ready-demo.log, same pids as its start), and vLLM 0.32's API server,
# told to stop before uvicorn took over its signals, raises KeyboardInterrupt("terminated") out of its
# initialisation (launchers/api_server/entry.py `_interrupt_init`): a traceback. The traceback's frames are the
# real ones of cpu-0.32-fail-engine-killed.log (its API server waiting for the engine), ending in that raise.
# The processes write apart, so either may come first. A stop by hand (Ctrl-C on vLLM itself) is SIGINT.
READY_DEMO = next(p for p in LOGS if p.name == "cpu-0.32-ready-demo.log")
ENGINE_KILLED = next(p for p in LOGS if p.name == "cpu-0.32-fail-engine-killed.log")


def _start_until_weights_loaded() -> list[str]:
    lines = _lines(READY_DEMO)
    return lines[: next(i for i, line in enumerate(lines) if "Loading weights took" in line) + 1]


def _signal_line(name: str) -> str:
    line = next(x for x in _lines(READY_DEMO) if "trigger received signal=SIGTERM" in x)
    return line.replace("SIGTERM", name)


def _api_server_interrupted(message: str) -> list[str]:
    lines = _lines(ENGINE_KILLED)
    first = lines.index("Traceback (most recent call last):")
    frames = lines[first: next(i for i in range(first, len(lines)) if "in wait_for_engine_startup" in lines[i])]
    return [*frames,
            '  File "/opt/venv/lib/python3.11/site-packages/vllm/entrypoints/launchers/api_server/entry.py", '
            'line 171, in _interrupt_init',
            '    raise KeyboardInterrupt("terminated")' if message else "    time.sleep(poll)",
            f"KeyboardInterrupt: {message}" if message else "KeyboardInterrupt"]


STOPPED = {
    "sigterm-engine-first": lambda: [*_start_until_weights_loaded(), _signal_line("SIGTERM"),
                                     *_api_server_interrupted("terminated")],
    "sigterm-api-server-first": lambda: [*_start_until_weights_loaded(), *_api_server_interrupted("terminated"),
                                         _signal_line("SIGTERM")],
    "sigint-by-hand": lambda: [*_start_until_weights_loaded(), _signal_line("SIGINT"), *_api_server_interrupted("")],
}


@pytest.mark.parametrize("case", STOPPED)
def test_a_start_stopped_by_a_signal_is_not_a_failure(case, tmp_path, capsys):
    log = tmp_path / "server.log"
    log.write_text("\n".join(STOPPED[case]()) + "\n")
    signal = "SIGINT" if case == "sigint-by-hand" else "SIGTERM"
    code, out, _ = _explain_out(str(log), capsys=capsys)
    assert (code, out) == (0, f"no failure found: stopped by a signal ({signal}); last stage reached: "
                              "weights loaded (weights loaded in 0.00 s)\n")
    code, out, _ = _explain_out(str(log), "--json", capsys=capsys)
    data = json.loads(out)
    assert code == 0 and (data["failed"], data["cause"], data["stopped_by"]) == (False, None, signal)


def test_a_served_log_stopped_by_r1_stop_says_so():
    result = explain(_lines(READY_DEMO))  # served, then `r1 stop`: SIGTERM
    assert result.fatal is None and result.stopped_by == "SIGTERM" and result.stage.key == "app_started"


@pytest.mark.parametrize("path", [p for p in LOGS if _expected_cause(p.name) not in (None, "?")], ids=_ids)
def test_a_failure_before_the_stop_is_still_the_failure(path):
    """r1 stops the tree (SIGTERM) after it saw a start fail: the failure came first, and it is the verdict."""
    lines = _lines(path)
    result = explain([*lines, _signal_line("SIGTERM")])
    assert result.fatal is not None and result.fatal.cause == _expected_cause(path.name)
    assert result.stopped_by is None
