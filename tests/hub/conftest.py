"""A Hugging Face mirror on localhost for the pull/models/rm tests: olah (a self-hosted Hub mirror, an
existing server; not one written here) serving a repo built from the demo model's files.

What olah does and does not do here (olah 0.5.4):
- `olah-cli` with `mirrors-path` and `offline = true` serves a local *git* repo as a Hub model repo, with no
  network: /api/models/ORG/NAME/revision/REV (not the bare /api/models/ORG/NAME, which it answers 401
  offline: r1 asks with an explicit revision), the tree listing with sizes, HEAD/GET /resolve/.
- Its local mirror ignores `Range` (it answers 200 with the whole file), so a resumed download could not
  show bytes not fetched again. A second olah in its ordinary caching-proxy mode, whose upstream "Hub" is
  the first, does answer Range with 206 from its block cache: /resolve/ requests go to it.
- It cannot say "gated" or "bad token" (its mirror always answers gated: false and ignores tokens). For
  those two the relay below answers as the Hub does (401 with X-Error-Code: GatedRepo, and 401 with
  "Invalid credentials in Authorization header"): a stand-in for those two answers only, said so in the tests.

The relay (a plain TCP relay, one request per connection: it asks for `Connection: close`) routes /api/ to
the mirror and /resolve/ to the caching olah, counts the bytes each side sends, can throttle what it
serves (so a test can interrupt a download midway) and records each request's head.

olah conflicts with vLLM's pins (fastapi, psutil), so it lives in its own virtual environment:
R1_OLAH_PYTHON names its python; else .venv-olah/bin/python in the checkout, else this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "r1cli" / "demo_model"
REPO = "r1test/demo"  # the mirror's repo: the demo model's files, plus files r1 must not fetch
GATED = "r1test/gated"  # answered by the relay's stand-in as the Hub answers a gated repo
BAD_TOKEN = "hf_bad_token_for_tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def olah_python() -> str:
    candidates = [os.environ.get("R1_OLAH_PYTHON"), str(ROOT / ".venv-olah" / "bin" / "python"), sys.executable]
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run([python, "-c", "import olah.server"],
                                                    capture_output=True).returncode == 0:
            return python
    pytest.fail("olah is not installed: python3 -m venv .venv-olah && .venv-olah/bin/pip install olah==0.5.4 "
                "(or name its python in R1_OLAH_PYTHON)", pytrace=False)


def build_repo(folder: Path) -> Path:
    """A git repo (what olah's mirror serves) of the demo model, plus a README and a subfolder's weights
    in another format: what a real repo has and vLLM does not load."""
    folder.mkdir(parents=True)
    for item in DEMO.iterdir():
        shutil.copy(item, folder / item.name)
    (folder / "README.md").write_text("# demo\n")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.pth").write_bytes(b"\0" * 50_000)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(folder)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(folder)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "demo"], check=True)
    return folder


def start_olah(python: str, workdir: Path, port: int, settings: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    toml = workdir / "olah.toml"
    toml.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{workdir / "repos"}"\n'
                    f'mirror-scheme = "http"\nmirror-netloc = "127.0.0.1:{port}"\n'
                    f'mirror-lfs-netloc = "127.0.0.1:{port}"\n{settings}')
    log = open(workdir / "olah.out", "wb")
    olah_cli = [python, "-c", "import sys; from olah.server import cli; sys.argv[0] = 'olah-cli'; cli()"]
    return subprocess.Popen([*olah_cli, "-c", str(toml)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"olah exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"olah did not answer {url} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


# ------------------------------------------------------------------------------------------ the relay
_CANNED = {
    "gated": b"HTTP/1.1 401 Unauthorized\r\nX-Error-Code: GatedRepo\r\nX-Error-Message: Access to model "
             + GATED.encode() + b" is restricted. You must have access to it and be authenticated to access it. "
             b"Please log in.\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "token": b"HTTP/1.1 401 Unauthorized\r\nX-Error-Message: Invalid credentials in Authorization header\r\n"
             b"Content-Length: 0\r\nConnection: close\r\n\r\n",
}


@dataclass
class Relay:
    """Between the client (HF_ENDPOINT) and the olahs: counts, throttles, records, routes."""
    api_port: int
    files_port: int
    port: int = field(default_factory=free_port)
    served: int = 0  # bytes sent to clients (response heads and bodies)
    rate: float | None = None  # bytes per second served, None for as fast as it goes
    requests: list[str] = field(default_factory=list)  # each request's head, lowercased
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Faults for the GETs of one file (fault_file), one per GET in order: ("cut", N) hangs up after N bytes of
    # the body, ("status", CODE) answers CODE instead of the file, ("corrupt", N) flips the body's byte N.
    fault_file: str = ""
    faults: list[tuple[str, int]] = field(default_factory=list)
    # GATHER = (N, seconds): each file's GET is held until N have come in at once (or the seconds pass) before
    # it is passed on; MOST_OPEN: the most held at once. A client that waits for one file's answer before it asks
    # for the next never has two held.
    held: int = 0
    most_open: int = 0
    gather: tuple[int, float] | None = None
    opened: threading.Condition = field(default_factory=threading.Condition)

    def reset(self) -> None:
        with self.lock:
            self.served, self.requests, self.faults = 0, [], []
            self.most_open, self.gather = 0, None

    def resolve_requests(self, name: str = "") -> list[str]:
        """The GETs of files (NAME's, or every file's)."""
        return [r for r in self.requests if r.startswith("get ") and "/resolve/" in r.split("\r\n")[0]
                and (not name or r.split("\r\n")[0].split(" ")[1].endswith("/" + name.lower()))]

    def fetched(self) -> set[str]:
        """The names of the files GET asked for."""
        return {r.split("\r\n")[0].split(" ")[1].rsplit("/", 1)[1] for r in self.resolve_requests()}

    def start(self) -> "Relay":
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            text = head.decode("latin-1").lower()
            with self.lock:
                self.requests.append(text.split("\r\n\r\n")[0])
            if f"/{GATED}/" in text.split("\r\n")[0] or text.split("\r\n")[0].endswith(f"/{GATED}"):
                client.sendall(_CANNED["gated"])
                return
            if f"bearer {BAD_TOKEN}" in text:
                client.sendall(_CANNED["token"])
                return
            fault = None
            first = text.split("\r\n")[0]
            if self.faults and "/resolve/" in first and first.startswith("get ") \
                    and first.split(" ")[1].endswith("/" + self.fault_file.lower()):
                with self.lock:
                    fault = self.faults.pop(0) if self.faults else None
            if fault and fault[0] == "status":
                client.sendall(f"HTTP/1.1 {fault[1]} Failing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
                return
            if self.gather and "/resolve/" in first and first.startswith("get "):
                with self.opened:
                    self.held += 1
                    self.most_open = max(self.most_open, self.held)
                    self.opened.notify_all()
                    self.opened.wait_for(lambda: self.most_open >= self.gather[0], timeout=self.gather[1])
                    self.held -= 1
            self._pass_on(client, head, text, first, fault)

    def _pass_on(self, client: socket.socket, head: bytes, text: str, first: str, fault) -> None:
        """The request to the olah that answers it (/resolve/: the caching one), its answer back to CLIENT."""
        port = self.files_port if "/resolve/" in first else self.api_port
        head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head)
        head = head.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
        with socket.create_connection(("127.0.0.1", port)) as upstream:
            upstream.sendall(head)
            threading.Thread(target=self._pipe_up, args=(client, upstream), daemon=True).start()
            self._pipe_down(upstream, client, fault)

    def _pipe_up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
        except OSError:
            pass

    def _pipe_down(self, upstream: socket.socket, client: socket.socket, fault=None) -> None:
        # With a fault, the answer's head is gathered first; then BODY is where the chunk passed on starts in the
        # body (negative while the chunk still holds the head).
        head, body, in_head = b"", 0, fault is not None
        try:
            while chunk := upstream.recv(16384):
                if self.rate:
                    time.sleep(len(chunk) / self.rate)
                if in_head:
                    head += chunk
                    if b"\r\n\r\n" not in head:
                        continue
                    chunk, body, in_head = head, -(head.index(b"\r\n\r\n") + 4), False
                if fault and fault[0] == "corrupt" and body <= fault[1] < body + len(chunk):
                    at = fault[1] - body
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1:]
                cut = fault is not None and fault[0] == "cut" and body + len(chunk) >= fault[1]
                if cut:
                    chunk = chunk[:fault[1] - body]
                client.sendall(chunk)
                body += len(chunk)
                with self.lock:
                    self.served += len(chunk)
                if cut:  # hang up mid-file (shutdown: a close alone leaves the socket open under _pipe_up's recv)
                    client.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            pass


@dataclass
class Mirror:
    endpoint: str
    relay: Relay
    repo_dir: Path


@pytest.fixture(scope="session")
def mirror(tmp_path_factory):
    """olah serving r1test/demo on localhost, behind the counting relay; HF_ENDPOINT is mirror.endpoint."""
    python = olah_python()
    base = tmp_path_factory.mktemp("olah")
    repo_dir = build_repo(base / "mirrors" / "models" / REPO)
    api_port, files_port = free_port(), free_port()
    procs = []
    try:
        procs.append(start_olah(python, base / "mirror", api_port,
                                f'mirrors-path = ["{base / "mirrors"}"]\n[accessibility]\noffline = true\n'))
        wait_http(f"http://127.0.0.1:{api_port}/api/models/{REPO}/revision/main", procs[0])
        procs.append(start_olah(python, base / "caching", files_port,
                                f'hf-scheme = "http"\nhf-netloc = "127.0.0.1:{api_port}"\n'
                                f'hf-lfs-netloc = "127.0.0.1:{api_port}"\n'))
        wait_http(f"http://127.0.0.1:{files_port}/{REPO}/resolve/main/config.json", procs[1])
        relay = Relay(api_port, files_port).start()
        try:
            yield Mirror(f"http://127.0.0.1:{relay.port}", relay, repo_dir)
        finally:
            relay.close()
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture
def hub_env(mirror, tmp_path, monkeypatch):
    """An empty HF cache and the mirror as the Hub, for in-process commands and subprocesses alike."""
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "R1_FREE_BYTES_OVERRIDE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", mirror.endpoint)
    mirror.relay.rate = None
    mirror.relay.reset()
    return tmp_path / "hf" / "hub"
