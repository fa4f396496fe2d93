"""One real vLLM that this module owns from start to stop: the second of the suite's three vLLM starts (the
session's shared demo server and test_devguard's network host are the others; issue 28).

What a user does with a model from the Hub, in the foreground, with an API key: `r1 serve r1test/demo
--api-key K` with an empty cache (olah on localhost is the Hub, conftest.py):
- the pull stage comes first, then vLLM starts offline on the cached files;
- while vLLM loads, no process's argv carries the key, and a second serve from another state directory
  cannot take the port;
- once ready it answers without asking the Hub anything, `r1 ask` and `r1 run` reuse it at once, `r1 status`
  says ready, `r1 models` lists the model as served and `r1 rm` refuses to delete it;
- a closed terminal (SIGHUP) stops the whole tree, the record and the port are freed, and the model can be
  removed.

The tests are the stages of that one server, in file order; one that fails leaves the later ones to fail on
the same cause. The module's fixture stops the whole tree whatever happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from conftest import STOP_WAIT_S, reap
from server.test_lifecycle import (
    running,  # the processes of a list that still run (not zombies)
)

from hub.conftest import DEMO, REPO, free_port
from hub.helpers import ROOT, r1_process
from hub.test_pull import WANTED, assert_pulled_whole, one_error_line
from r1cli.errors import ExitStatus
from r1cli.hub.pull import human
from r1cli.server import process

pytestmark = [pytest.mark.timeout(600), pytest.mark.own_vllm]

KEY = "sk-owned-server-7f3a9c"
TOTAL = sum(f.stat().st_size for f in DEMO.iterdir() if f.name in WANTED)  # what a pull of r1test/demo fetches
# The mirror's repo is the demo's files under a Hub id: the demo's defaults (cmdline.DEMO_DEFAULTS) apply to the
# embedded demo alone, so its window is given; its KV cache is r1's CPU default for any model (issue 32).
CPU_FLAGS = ["--dtype", "bfloat16", "--max-model-len", "1024", "--no-warmup"]


@dataclass
class Life:
    """The foreground `r1 serve`, its stderr read line by line as it comes."""
    home: Path
    port: int
    env: dict
    hub: Path
    mirror: object
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    requests_at_launch: int | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        for line in self.proc.stderr:
            with self.changed:
                if "launching vLLM" in line and self.requests_at_launch is None:
                    self.requests_at_launch = len(self.mirror.relay.requests)
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # r1 ended
            self.changed.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(line for line in self.lines if line is not None)

    def wait_line(self, starts: str, timeout: float = 450) -> str:
        """The first stderr line that starts with STARTS, waiting for it; fails if r1 ends first."""
        end = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines if line is not None and line.startswith(starts)]
                if found:
                    return found[0]
                assert None not in self.lines, f"r1 ended before {starts!r}:\n{self.stderr}"
                assert time.monotonic() < end, f"no {starts!r} within {timeout:g} s:\n{self.stderr}"
                self.changed.wait(1.0)

    def record(self) -> dict | None:
        try:
            return json.loads((self.home / "servers" / f"{self.port}.json").read_text())
        except (OSError, ValueError):
            return None

    def vllm_tree(self) -> list[psutil.Process]:
        """vLLM's processes: the API server its record names, and what it started."""
        record = self.record()
        try:
            leader = psutil.Process(record["pid"])
            return [leader, *leader.children(recursive=True)]
        except (TypeError, psutil.Error):
            return []

    def r1(self, *args: str, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
        return r1_process(*args, env={**self.env, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def life(mirror, tmp_path_factory):
    base = tmp_path_factory.mktemp("owned")
    home, hf = base / "r1-home", base / "hf"
    home.mkdir(mode=0o700)
    env = {"R1_HOME": str(home), "HF_HOME": str(hf), "HF_ENDPOINT": mirror.endpoint}
    mirror.relay.rate = None
    mirror.relay.reset()
    life = Life(home, free_port(), {**env, "R1_API_KEY": KEY}, hf / "hub", mirror)
    full_env = {**os.environ, **env}
    full_env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # r1's own sizing is what is shown
    life.proc = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", REPO, "--port", str(life.port),
                                  "--api-key", KEY, *CPU_FLAGS],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=ROOT, env=full_env)
    threading.Thread(target=life.read, daemon=True).start()
    try:
        yield life
    finally:  # whatever happened: r1 (its watchdog then stops the server), and then anything of the tree
        tree = life.vllm_tree()
        reap(life.proc)
        r1_process("stop", "--all", env={"R1_HOME": str(home)}, timeout=120)
        for proc in running(tree):
            proc.kill()
        psutil.wait_procs(tree, timeout=STOP_WAIT_S)


def test_the_pull_comes_first_then_vllm_starts(life):
    """The downloading stage, before vLLM's: r1 pull's plain lines (stderr is a pipe) under the server's name."""
    launch = life.wait_line("r1: demo: launching vLLM")
    lines = life.lines[: life.lines.index(launch)]
    heads = [line for line in lines if line.startswith(f"r1: demo: downloading {REPO}@")]
    assert heads and f"{human(TOTAL)} to fetch in {len(WANTED)} files" in heads[0], life.stderr
    assert "r1: fetching model.safetensors (2.6 MB)" in lines
    assert any(line.startswith(f"r1: demo: downloaded {human(TOTAL)} in ") for line in lines), life.stderr
    assert_pulled_whole(life.hub)
    assert len(life.mirror.relay.resolve_requests("model.safetensors")) == 1


def test_while_vllm_loads_no_argv_carries_the_key(life):
    end = time.monotonic() + 300
    while not any(p.name() == "VLLM::EngineCore" for p in running(life.vllm_tree())):  # loading
        assert life.proc.poll() is None and time.monotonic() < end, life.stderr
        time.sleep(0.2)
    # `ps -eo args` for r1 (re-executed without it) and every process of vLLM's: no key anywhere.
    for proc in [psutil.Process(life.proc.pid), *life.vllm_tree()]:
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue  # a short-lived helper of vLLM's that exited since the tree was read: no argv left to show
        assert KEY not in " ".join(argv), argv
    text = (life.home / "servers" / f"{life.port}.json").read_text()
    assert KEY not in text and json.loads(text)["api_key"] is True


def test_a_serve_from_another_home_cannot_take_the_port_while_it_loads(life, tmp_path):
    other = tmp_path / "other-home"
    other.mkdir(mode=0o700)
    code, out, err = r1_process("serve", "demo", "--port", str(life.port), "-d", env={"R1_HOME": str(other)},
                                timeout=300)
    assert "r1: ready in" not in life.stderr, "the server was ready already: this test is about a loading one"
    # Refused by the machine-wide start lock, or (when vLLM has bound the port already) by the OS-level check.
    error = next(line for line in err.splitlines() if line.startswith("r1: error: "))
    assert (code, error) in [
        (2, f"r1: error: another `r1 serve` is starting a server on port {life.port}"),
        (5, f"r1: error: port {life.port} on 127.0.0.1 is already in use (bound by a server that is still starting)"),
    ], err
    assert out == "" and not (other / "servers" / f"{life.port}.json").exists()


def test_ready_it_answers_without_asking_the_hub(life):
    summary = life.wait_line("r1: ready in")
    assert f"http://127.0.0.1:{life.port}/v1" in summary
    life.wait_line("r1: serving; press Ctrl-C to stop", timeout=60)
    assert "Traceback" not in life.stderr
    record = life.record()
    assert record["model"] == REPO and record["ready_at"]
    assert psutil.Process(record["pid"]).environ().get("HF_HUB_OFFLINE") == "1"
    code, answer, why = life.r1("ask", "--port", str(life.port), "What is 2+3?")
    assert (code, answer) == (0, "5\n"), why
    # vLLM ran offline on the cached files: since its launch it asked the mirror nothing.
    assert life.requests_at_launch is not None
    assert life.mirror.relay.requests[life.requests_at_launch:] == []


def test_its_kv_cache_is_four_sequences_not_a_share_of_ram(life):
    """Issue 32: vLLM's CPU default gave this 2.6 MB model an 18 GiB KV cache (0.8 of a 23 GiB machine's RAM). r1
    gives it 4 sequences of its 1,024-token window, says so in its plan line, and vLLM holds what was planned."""
    life.wait_line("r1: ready in")
    assert "r1: plan: CPU, context window 1,024, KV cache 4 MiB (4,096 tokens)" in life.lines, life.stderr
    assert any(line.endswith("] KV cache: 4,096 tokens, max concurrency 4x") for line in life.lines), life.stderr
    assert "KV cache 4,096 tokens" in life.wait_line("r1: ready in")
    argv = psutil.Process(life.record()["pid"]).cmdline()
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(4 * 2**20)


def test_without_the_key_the_api_refuses(life):
    code, out, err = life.r1("ask", "--port", str(life.port), "What is 2+3?", env={"R1_API_KEY": ""})
    assert code != 0 and out == ""
    assert "401" in one_error_line(err) or "API key" in one_error_line(err), err


def test_status_says_ready(life):
    code, out, _ = life.r1("status", "--json")
    [s] = [s for s in json.loads(out)["servers"] if s["port"] == life.port]
    assert (s["state"], s["orphans"], s["started_by_r1"], code) == ("ready", [], True, 0), s


def test_run_reuses_it_at_once(life):
    code, out, err = life.r1("run", REPO, "What is 7*6?", env={"R1_PORT": str(free_port())})
    assert (code, out) == (0, "42\n"), err
    assert "starting vLLM" not in err and "ready in" not in err


def test_models_lists_it_served_and_rm_refuses(life):
    code, out, why = life.r1("models", "--json")
    assert code == 0, why
    listed = {m["repo"]: m for m in json.loads(out)}
    assert listed[REPO]["served"] is True and listed[REPO]["format"] == "bf16"
    code, out, why = life.r1("rm", REPO, "--yes")
    assert code == ExitStatus.IN_USE and one_error_line(why).startswith(f"r1: error: {REPO} is being served")
    assert_pulled_whole(life.hub)  # nothing deleted


def test_a_closed_terminal_stops_the_whole_tree(life):
    tree = life.vllm_tree()
    assert any(p.name() == "VLLM::EngineCore" for p in tree), [p.name() for p in tree]
    life.proc.send_signal(signal.SIGHUP)  # the terminal closed: handled as Ctrl-C is
    assert life.proc.wait(timeout=STOP_WAIT_S) == 130, life.stderr
    _, left = psutil.wait_procs(tree, timeout=STOP_WAIT_S)  # the watchdog too: r1 stopped the server itself
    assert running(left) == [], [p.name() for p in left]
    assert life.record() is None
    assert process.port_holder("127.0.0.1", life.port) is None
    code, _, why = life.r1("rm", REPO, "--yes")
    assert code == 0 and f"r1: deleted {REPO}: freed " in why
