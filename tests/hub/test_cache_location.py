"""The cache r1 reads and pulls into is huggingface_hub's own (r1cli/machine.hf_hub_cache copies its rule so
that `import r1cli` stays light): for each variable huggingface_hub honours, the folder is the one its constants
name in a fresh interpreter, and the vLLM r1 starts inherits the variable unchanged (so it reads that folder)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from r1cli import machine

pytestmark = pytest.mark.timeout(60)

VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")


def huggingface_hubs(env: dict[str, str]) -> str:
    code = "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("settings", [
    {},
    {"HF_HUB_CACHE": "/data/hub"},
    {"HUGGINGFACE_HUB_CACHE": "/legacy/hub"},
    {"HF_HOME": "/data/hf"},
    {"XDG_CACHE_HOME": "/xdg"},
    {"XDG_CACHE_HOME": "/xdg", "HF_HOME": "/data/hf"},
    {"HF_HOME": "/data/hf", "HUGGINGFACE_HUB_CACHE": "/legacy/hub"},
    {"HUGGINGFACE_HUB_CACHE": "/legacy/hub", "HF_HUB_CACHE": "/data/hub"},
    {"HF_HOME": "~/hf"},
    {"HF_HUB_CACHE": "$R1_TEST_ROOT/hub", "R1_TEST_ROOT": "/root-of-tests"},
], ids=lambda s: ",".join(s) or "none")
def test_the_cache_is_huggingface_hubs_for_each_variable(settings, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(settings)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert str(machine.hf_hub_cache()) == huggingface_hubs(env)


def test_vllm_inherits_the_cache_variables_unchanged():
    from r1cli.server import cmdline

    launch = cmdline.build(cmdline.options_for("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"), has_vllm_cli=True)
    assert not set(launch.env) & set(VARIABLES)  # the child gets os.environ's (server/process.py: {**os.environ, **env})
