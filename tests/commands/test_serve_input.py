"""`r1 serve` refuses bad input before it spawns anything (issue 13): a negative --timeout, a model
folder whose config.json is broken, missing or not an object, an empty folder, a --log-file that is a
symbolic link. Each runs the real CLI with a state directory of its own and checks that no vLLM was
started: no record, no log, within seconds (vLLM itself finds a broken config.json after 15-18 s)."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, run_r1

DEMO = ROOT / "r1cli" / "demo_model"


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


def serve(home: Path, *args: str, timeout: str = "30"):
    """`r1 serve ... -d` with a short deadline, so that a start that should not have happened ends soon."""
    t0 = time.monotonic()
    proc = run_r1("serve", *args, "--port", str(free_port()), "-d", "--timeout", timeout, env={"R1_HOME": str(home)},
                  timeout=120)
    return proc, time.monotonic() - t0


def nothing_spawned(home: Path) -> bool:
    return not list(home.glob("servers/*.json")) and not list(home.glob("logs/*.log"))


@pytest.mark.parametrize("value", ["-5", "0"])
def test_a_timeout_that_is_not_positive_is_refused_before_spawning(home, value):
    proc, seconds = serve(home, "demo", timeout=value)
    assert proc.returncode == 2, proc.stderr
    assert "--timeout" in proc.stderr.splitlines()[0] and f"{float(value)} is not in the range x>=0.1" in proc.stderr
    assert nothing_spawned(home) and seconds < 10


def model_copy(tmp_path: Path, config: str | None) -> Path:
    """The demo model's files, with CONFIG as its config.json (None: no config.json at all)."""
    folder = tmp_path / "model"
    shutil.copytree(DEMO, folder)
    if config is None:
        (folder / "config.json").unlink()
    else:
        (folder / "config.json").write_text(config)
    return folder


@pytest.mark.parametrize("config, message", [
    ('{"architectures": ["Qwen2ForCausalLM"],\n "hidden_size": 64,,}',
     "is not valid JSON: Expecting property name enclosed in double quotes (line 2, column 20)"),
    ("", "is not valid JSON: Expecting value (line 1, column 1)"),
    ('["Qwen2ForCausalLM"]', "is not a JSON object (vLLM reads the model's settings from one)"),
    ("\xff\xfe", "is not UTF-8 text"),
])
def test_a_broken_config_json_is_named_before_spawning(home, tmp_path, config, message):
    folder = model_copy(tmp_path, None)
    (folder / "config.json").write_bytes(config.encode("latin-1") if config == "\xff\xfe" else config.encode())
    proc, seconds = serve(home, str(folder))
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.splitlines()[0] == f"r1: error: {folder / 'config.json'} {message}"
    assert nothing_spawned(home) and seconds < 10


def test_a_model_folder_without_config_json_is_refused(home, tmp_path):
    folder = model_copy(tmp_path, None)
    proc, _ = serve(home, str(folder))
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0] == f"r1: error: the model folder {folder} has no config.json"
    assert nothing_spawned(home)


def test_an_empty_model_folder_is_refused(home, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    proc, seconds = serve(home, str(folder))
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0] == f"r1: error: the model folder {folder} is empty"
    assert "fix: " in proc.stderr and nothing_spawned(home) and seconds < 10


def test_a_log_file_that_is_a_symbolic_link_is_refused(home, tmp_path):
    target = tmp_path / "someone-elses-file"
    target.write_text("precious\n")
    target.chmod(0o644)
    link = tmp_path / "server.log"
    link.symlink_to(target)
    proc, _ = serve(home, "demo", "--log-file", str(link))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"r1: error: --log-file {link} is a symbolic link: r1 does not write through one"
    assert target.read_text() == "precious\n" and stat.S_IMODE(target.stat().st_mode) == 0o644  # not written, not chmodded
    assert not list(home.glob("servers/*.json"))


def test_process_open_log_refuses_a_link_made_after_the_check(tmp_path):
    """The race a check-then-open leaves: open_log opens with O_NOFOLLOW."""
    from r1cli.errors import UsageError
    from r1cli.server import process

    target = tmp_path / "target"
    target.write_text("x")
    link = tmp_path / "log"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="is a symbolic link"):
        process.open_log(link)
    fd = process.open_log(tmp_path / "new.log")
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "new.log").stat().st_mode) == 0o600
