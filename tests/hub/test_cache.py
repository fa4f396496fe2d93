"""`r1 models` and `r1 rm` on a cache that `r1 pull` filled from the olah mirror (conftest.py)."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from hub.conftest import REPO
from hub.helpers import r1
from r1cli.errors import ExitStatus
from r1cli.hub import cache
from r1cli.server import state

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pulled(hub_env):
    status, out, err = r1("pull", REPO)
    assert status == 0, err
    return hub_env, out.strip()


@pytest.fixture
def serving(pulled):
    """A record of a live r1 server serving REPO (this test process stands in for its vLLM)."""
    me = psutil.Process(os.getpid())
    record = state.ServerRecord(pid=me.pid, create_time=me.create_time(), port=18999, host="127.0.0.1",
                                url="http://127.0.0.1:18999/v1", model=REPO, served_name="demo",
                                log_path="/dev/null", started_at=0.0)
    state.save(record)
    try:
        yield record
    finally:
        state.remove(record.port)


def test_models_lists_what_r1_can_serve(pulled):
    _, snapshot = pulled
    status, out, err = r1("models")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split() == ["MODEL", "REVISION", "SIZE", "FORMAT", "PRESET", "SERVED"]
    commit = snapshot.rsplit("/", 1)[1]
    assert row.split() == [REPO, commit[:7], "(main)", "2.6", "MB", "bf16", "-", "-"]

    status, out, _ = r1("models", "--json")
    (model,) = json.loads(out)
    assert model == {"repo": REPO, "commit": commit, "refs": ["main"], "size": model["size"], "format": "bf16",
                     "preset": None, "served": False, "path": snapshot}
    assert 2_600_000 < model["size"] < 2_700_000


def test_models_says_served_and_rm_refuses_it(pulled, serving):
    hub_env, _ = pulled
    status, out, _ = r1("models", "--json")
    assert json.loads(out)[0]["served"] is True
    status, _, err = r1("rm", REPO, "--yes")
    assert status == ExitStatus.IN_USE
    assert "is being served" in err and "r1 stop" in err and "Traceback" not in err
    assert (hub_env / "models--r1test--demo").is_dir()


def test_rm_asks_first_and_says_what_it_freed(pulled):
    hub_env, _ = pulled
    status, _, err = r1("rm", REPO)  # stdin is not a terminal: no one to ask
    assert status == ExitStatus.USAGE and "--yes" in err
    assert (hub_env / "models--r1test--demo").is_dir()

    status, out, err = r1("rm", REPO, "--yes")
    assert status == 0, err
    assert out == "" and "deleted r1test/demo: freed 2.6 MB" in err
    assert not (hub_env / "models--r1test--demo").exists()
    status, out, err = r1("models")
    assert status == 0 and out == "" and "no model r1 can serve" in err


def test_rm_confirmation_on_a_terminal(pulled, monkeypatch):
    hub_env, _ = pulled
    from r1cli.console import Environment

    monkeypatch.setattr(Environment, "stdin_isatty", property(lambda self: True))
    status, _, err = r1("rm", REPO, stdin="n\n")
    assert status == ExitStatus.OK and "Delete r1test/demo (1 revision, 2.6 MB)" in err and "kept" in err
    assert (hub_env / "models--r1test--demo").is_dir()
    status, _, err = r1("rm", REPO, stdin="y\n")
    assert status == 0 and "freed 2.6 MB" in err
    assert not (hub_env / "models--r1test--demo").exists()


def test_rm_of_a_model_not_in_the_cache(pulled):
    status, _, err = r1("rm", "r1test/other", "--yes")
    assert status == ExitStatus.NOT_FOUND and "not in the Hugging Face cache" in err
    status, _, err = r1("rm", REPO, "--revision", "0123456", "--yes")
    assert status == ExitStatus.NOT_FOUND and "no revision" in err


def test_a_partial_pull_is_not_listed(hub_env, mirror):
    """A pull stopped before its last file (config.json) leaves no servable model to list."""
    folder = hub_env / "models--r1test--demo" / "snapshots" / ("0" * 40)
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    status, out, _ = r1("models", "--json")
    assert status == 0 and json.loads(out) == []


@pytest.mark.parametrize("cfg, expected", [
    ({"torch_dtype": "bfloat16"}, "bf16"), ({"torch_dtype": "float16"}, "fp16"),
    ({"torch_dtype": "float16", "quantization_config": {"quant_method": "awq", "bits": 4}}, "AWQ"),
    ({"quantization_config": {"quant_method": "gptq"}}, "GPTQ"), ({"dtype": "bfloat16"}, "bf16"), ({}, "?")])
def test_weight_format(cfg, expected):
    assert cache.weight_format(cfg) == expected


def test_preset_name():
    assert cache.preset_name("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B") == "1.5b"
    assert cache.preset_name("casperhansen/deepseek-r1-distill-qwen-7b-awq") == "7b awq"
    assert cache.preset_name("someone/model") is None


def test_rm_completes_the_cached_models_not_the_presets(pulled):
    """Issue 32, item 10: `r1 rm <TAB>` offered the presets (none of them cached here) and not the model that is.
    Completion as bash asks it, in a process of its own, over the cache the pull filled."""
    import subprocess
    import sys

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        proc = subprocess.run([sys.executable, "-m", "r1cli"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "_R1_COMPLETE": "complete_bash", "COMP_WORDS": line,
                                   "COMP_CWORD": str(len(words) - 1)})
        return proc.stdout.split()

    assert complete("r1 rm ") == [REPO]
    assert complete("r1 rm r1t") == [REPO] and complete("r1 rm 1.5") == []
    assert "1.5b" in complete("r1 serve ")  # serve still offers the presets: it can pull them
