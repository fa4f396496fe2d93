"""Secrets of `r1 serve` (issue 13): the API key in no argv (r1 re-executes itself without it, or reads
it from R1_API_KEY or --api-key-file), and secret-looking flags after `--` redacted in --dry-run and
in the server record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import ROOT, STOP_WAIT_S, free_port, reap, run_r1
from r1cli.server import apikey, cmdline

KEY = "sk-argv-check-51c2"


@pytest.mark.parametrize("argv, shown", [
    (["--hf-token", "hf_abc"], ["--hf-token", "***"]),
    (["--hf-token=hf_abc"], ["--hf-token=***"]),
    (["--api-key", "k", "--port", "1"], ["--api-key", "***", "--port", "1"]),
    (["--client-secret", "s", "--db_password=p"], ["--client-secret", "***", "--db_password=***"]),
    (["--hf-token", "--port", "8000"], ["--hf-token", "--port", "8000"]),  # no value: the cached token
    (["--tokenizer", "t", "--max-num-batched-tokens", "8192", "--ssl-keyfile", "k.pem"],
     ["--tokenizer", "t", "--max-num-batched-tokens", "8192", "--ssl-keyfile", "k.pem"]),  # not secrets
])
def test_redact(argv, shown):
    assert cmdline.redact(["vllm", "serve", *argv]) == ["vllm", "serve", *shown]


def test_the_record_keeps_the_redacted_argv():
    opts = cmdline.options_for("demo", extra=["--hf-token", "hf_secret", "--seed", "1"])
    record_argv = cmdline.redact(cmdline.build(opts, has_vllm_cli=False).argv)  # what serve.start stores
    assert "hf_secret" not in record_argv and record_argv[-4:] == ["--hf-token", "***", "--seed", "1"]


def test_dry_run_redacts_what_follows_the_double_dash():
    proc = run_r1("serve", "demo", "--dry-run", "--port", str(free_port()), "--",
                  "--hf-token", "hf_secret", "--api-key=sk-2", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert "hf_secret" not in proc.stdout and "sk-2" not in proc.stdout
    assert "--hf-token '***'" in proc.stdout and "--seed 1" in proc.stdout
    # vLLM's own --api-key goes by environment too: out of its argv, into VLLM_API_KEY.
    assert "VLLM_API_KEY='***'" in proc.stdout and "--api-key" not in proc.stdout


@pytest.mark.parametrize("argv, rest", [
    (["serve", "demo", "--api-key", "k", "-d"], ["serve", "demo", "-d"]),
    (["serve", "--api-key=k", "demo"], ["serve", "demo"]),
    (["serve", "demo", "--", "--api-key", "k", "--seed", "1"], ["serve", "demo", "--", "--seed", "1"]),
])
def test_the_argv_r1_reexecutes_with(argv, rest):
    assert apikey.carries_key(argv)
    assert apikey.without_key(argv) == rest
    assert not apikey.carries_key(rest)


def test_key_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    key_file.chmod(0o600)
    proc = run_r1("serve", "demo", "--dry-run", "--api-key-file", str(key_file))
    # stderr carries the plan line only (no warning), and no copy of the key anywhere
    assert proc.returncode == 0 and proc.stderr.startswith("r1: plan: ") and "warning" not in proc.stderr
    assert "VLLM_API_KEY='***'" in proc.stdout and "sk-from-file" not in proc.stdout + proc.stderr
    key_file.chmod(0o644)
    proc = run_r1("serve", "demo", "--dry-run", "--api-key-file", str(key_file))
    assert f"r1: warning: {key_file} is readable by others (mode 0644): chmod 600 {key_file}\n" in proc.stderr


@pytest.mark.parametrize("content, args, message", [
    (None, [], "cannot read --api-key-file {path}: No such file or directory"),
    ("\n", [], "--api-key-file {path} must hold one key on one line"),
    ("a\nb\n", [], "--api-key-file {path} must hold one key on one line"),
    ("k\n", ["--api-key", "other"], "give --api-key-file or --api-key, not both"),
])
def test_bad_key_files_are_usage_errors(tmp_path, content, args, message):
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    proc = run_r1("serve", "demo", "--dry-run", "--api-key-file", str(path), *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "r1: error: " + message.format(path=path)


def test_a_key_given_as_an_argument_leaves_r1s_argv(tmp_path):
    """`r1 serve --api-key K`: r1 replaces itself (same pid) by one whose argv lacks the key, which moves
    into R1_API_KEY (readable by the same user only). A FIFO as --log-file holds the new r1 just before
    it would spawn vLLM (opening a FIFO for writing waits for a reader), where the test looks at it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    r1 = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--api-key", KEY, "--port", str(free_port()),
                           "--log-file", str(fifo)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "R1_HOME": str(home)}, cwd=ROOT)
    try:
        proc = psutil.Process(r1.pid)
        end = time.monotonic() + 60
        while "--log-file" not in proc.cmdline() or KEY in proc.cmdline() or proc.status() != psutil.STATUS_SLEEPING:
            assert r1.poll() is None and time.monotonic() < end, r1.stderr.read() if r1.poll() is not None else "slow"
            time.sleep(0.1)
        assert KEY not in " ".join(proc.cmdline())
        assert proc.cmdline()[1:3] == ["-m", "r1cli"] and proc.environ()["R1_API_KEY"] == KEY
        assert proc.children() == []  # nothing spawned yet: nothing else could have shown it
        r1.send_signal(signal.SIGTERM)
        assert r1.wait(timeout=STOP_WAIT_S) == 130
        assert not list(home.glob("servers/*.json"))
    finally:
        reap(r1)


def test_dry_run_does_not_reexecute():
    proc = run_r1("serve", "demo", "--dry-run", "--api-key", KEY)
    assert proc.returncode == 0 and KEY not in proc.stdout
    assert json.dumps(KEY) not in proc.stderr
