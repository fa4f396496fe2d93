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

