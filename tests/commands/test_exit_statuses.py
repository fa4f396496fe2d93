"""Exit statuses a script relies on (issue 32, item 5): a closed pipe is not a failure for any command (the
reader went away: `| head -1`), declining `r1 rm` is not an interrupt, and a model the server does not serve
is bad usage. The pipes are real: bash with pipefail, the reader closing its end."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

R1 = f"{shlex.quote(sys.executable)} -m r1cli"


def piped(cmd: str, env: dict, timeout: float = 60) -> tuple[list[int], str, str]:
    """Run `cmd` (a pipeline) in bash; the exit status of each of its commands, its stdout and stderr."""
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}; echo \"${{PIPESTATUS[@]}}\" >&2"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL)
    *err, statuses = proc.stderr.rstrip("\n").split("\n")
    return [int(s) for s in statuses.split()], proc.stdout, "\n".join(err)


@pytest.fixture
def home(tmp_path) -> dict:
    """A state directory of its own (no server), with a long server log kept from an earlier server."""
    logs = tmp_path / "home" / "logs"
    logs.mkdir(parents=True)
    # -n 1000 writes 1,000 lines of 200 bytes: far more than a pipe holds, so r1 is still writing when `head -1` leaves.
    (logs / "server-8123.log").write_text("".join(f"line {i:04d} " + "x" * 189 + "\n" for i in range(2000)))
    return {"R1_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "hub")}


def _fake_cached_model(hub: Path) -> None:
    """A servable model in a Hugging Face cache laid out as huggingface_hub writes it (blobs + snapshot links)."""
    repo = hub / "models--r1test--pipe"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in (("config.json", b'{"architectures": ["Qwen2ForCausalLM"], "torch_dtype": "bfloat16"}'),
                       ("model.safetensors", b"\0" * 64)):
        blob = repo / "blobs" / f"{abs(hash(name)):x}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def test_logs_into_a_closed_pipe_exits_0(home):
    statuses, out, err = piped(f"{R1} logs -n 1000 | head -1", home)
    assert statuses == [0, 0], err
    assert out == "line 1000 " + "x" * 189 + "\n"
    assert "Traceback" not in err and "Broken pipe" not in err


def test_models_into_a_closed_pipe_exits_0(home):
    _fake_cached_model(Path(home["HF_HUB_CACHE"]))
    # head -0 reads nothing and leaves at once: r1 (a Python start later) writes into a closed pipe
    statuses, out, err = piped(f"{R1} models | head -0", home)
    assert statuses == [0, 0], err
    assert out == "" and "Traceback" not in err


def test_status_watch_into_a_closed_pipe_exits_0(home):
    t0 = time.monotonic()
    statuses, out, err = piped(f"{R1} status --watch 1 | head -2", home)
    assert statuses == [0, 0], err
    assert len(out.splitlines()) == 2 and "Traceback" not in err
    assert time.monotonic() - t0 < 30  # it ends at the first refresh after head left


def test_declining_rm_exits_0(tmp_path, monkeypatch):
    """`r1 rm` answered "n": the user's choice, done as asked (exit 0), not an interrupt (130)."""
    import io

    from r1cli import cli
    from r1cli.console import Environment

    hub = tmp_path / "hub"
    _fake_cached_model(hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(Environment, "stdin_isatty", property(lambda self: True))
    out, err = io.StringIO(), io.StringIO()
    status = cli.run(["rm", "r1test/pipe"], Environment(_stdin=io.StringIO("n\n"), _stdout=out, _stderr=err))
    assert status == 0, err.getvalue()
    assert "Delete r1test/pipe (1 revision" in err.getvalue() and "kept r1test/pipe: nothing deleted" in err.getvalue()
    assert (hub / "models--r1test--pipe").is_dir() and out.getvalue() == ""


def test_a_model_the_server_does_not_serve_is_bad_usage(demo_server):
    """`r1 ask -m wrong`: the real vLLM answers 404 "does not exist": the user's input (2), not unexpected (1)."""
    from conftest import run_r1

    proc = run_r1("ask", "-m", "wrong", "What is 2+3?", "--base-url", demo_server.base_url)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-2].startswith("r1: error: the server answered 404: The model `wrong` does not exist"), proc.stderr
    assert lines[-1].startswith("  fix: leave -m out")
    assert proc.stdout == ""


@pytest.fixture
def web_server(tmp_path):
    """A plain web server (Python's http.server, as `python -m http.server` runs): the wrong kind of server."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_a_plain_web_server_is_named_in_one_line(web_server, tmp_path):
    """`r1 ask --port P` where P is a plain web server answering 404 HTML: one line saying it is not an
    OpenAI-compatible server and what answered (status, its Server header, the page's first words); exit 3."""
    from conftest import run_r1
    from r1cli.errors import ExitStatus

    proc = run_r1("ask", "--port", str(web_server), "What is 2+3?", env={"R1_HOME": str(tmp_path / "home")})
    assert proc.returncode == ExitStatus.NO_SERVER, proc.stderr
    note, error, fix = proc.stderr.splitlines()
    assert note.startswith(f"r1: using http://127.0.0.1:{web_server}/v1, a server not started by r1")
    assert error.startswith(f"r1: error: the server at http://127.0.0.1:{web_server}/v1 is not an OpenAI-compatible "
                            f"API: it answered 404 (server SimpleHTTP/"), error
    assert "text/html" in error and "Error response" in error and "<" not in error and len(error) < 300
    assert fix.startswith("  fix: ") and proc.stdout == ""
