"""A model name that is no preset and no cached model (issue 32, item 2): `r1 serve demoo`, `r1 serve 1.5
--dry-run`, `r1 run demoo "What is 2+3?"` went to the Hub for something else and ended in "the Hub cannot be
reached", naming no model. The error names the model tried, the preset or cached model the name was near,
and, when r1 already serves a model, that one as the fix. The Hub here refuses connections (HF_ENDPOINT on a
closed port): nothing is downloaded and no vLLM starts."""

from __future__ import annotations

import pytest

from conftest import free_port, run_r1
from r1cli.errors import ExitStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def no_hub(tmp_path) -> dict:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
            "R1_PORT": str(free_port())}


def test_serve_of_a_typo_names_it_and_the_preset_it_was_near(no_hub, tmp_path):
    env = {**no_hub, "R1_HOME": str(tmp_path / "home")}  # no server runs
    proc = run_r1("serve", "demoo", "-d", env=env, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    error, detail, fix = proc.stderr.splitlines()[-3:]
    assert error.startswith(f"r1: error: the Hub ({no_hub['HF_ENDPOINT']}) cannot be reached to fetch demoo: "), error
    assert detail == "  | 'demoo' is not a preset or a cached model: did you mean demo?"
    assert fix == "  fix: r1 serve demo"


def test_dry_run_of_a_near_preset_suggests_it(no_hub, tmp_path):
    env = {**no_hub, "R1_HOME": str(tmp_path / "home")}
    proc = run_r1("serve", "1.5", "--dry-run", env=env, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    error, detail, fix = proc.stderr.splitlines()[-3:]
    assert error.startswith("r1: error: a start would fail: the Hub (") and "cannot be reached to fetch 1.5: " in error
    assert detail == "  | '1.5' is not a preset or a cached model: did you mean 1.5b?"
    assert fix == "  fix: r1 serve 1.5b"


def test_run_of_a_typo_while_the_demo_serves_names_the_demo_as_the_fix(demo_server, no_hub):
    """`r1 run demoo "What is 2+3?"`: 'demoo' is no model, so it began the question and the default (1.5B) was
    to be served; the error says so, and the demo r1 already serves is the fix."""
    proc = run_r1("run", "demoo", "What is 2+3?", env=no_hub, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    error, detail, fix = proc.stderr.splitlines()[-3:]
    assert "cannot be reached to fetch deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B: " in error, error
    assert detail == ("  | 'demoo' is not a model r1 knows, so it began the question and the default, 1.5b, "
                      "was to be served: did you mean demo?")
    assert fix == "  fix: r1 already serves demo: r1 run demo 'What is 2+3?'"
    assert proc.stdout == ""


def test_serve_of_a_typo_while_the_demo_serves_names_the_demo_as_the_fix(demo_server, no_hub):
    proc = run_r1("serve", "7bb", "-d", env=no_hub, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    error, detail, fix = proc.stderr.splitlines()[-3:]
    assert "cannot be reached to fetch 7bb: " in error
    assert detail == "  | '7bb' is not a preset or a cached model: did you mean 7b?"
    assert fix == "  fix: r1 already serves demo: r1 run demo 'What is 2+3?'"


@pytest.mark.parametrize("args, detail, fix", [
    (["demoo"], "'demoo' is not a preset or a cached model: did you mean demo?",
     "r1 serve demo (the demo ships inside r1: nothing to pull)"),
    (["1.5", "--dry-run"], "'1.5' is not a preset or a cached model: did you mean 1.5b?", "r1 pull 1.5b"),
    (["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5"],
     "'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5' is not a preset or a cached model: did you mean 1.5b?", "r1 pull 1.5b"),
])
def test_pull_of_a_typo_names_the_model_it_was_near(no_hub, tmp_path, args, detail, fix):
    """`r1 pull demoo` said only that the Hub cannot be reached: item 2's rule applies to pull too, and its fix is
    the pull of the near preset (the demo has nothing to pull: serve it)."""
    proc = run_r1("pull", *args, env={**no_hub, "R1_HOME": str(tmp_path / "home")}, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    error, said, hint = proc.stderr.splitlines()[-3:]
    assert error.startswith(f"r1: error: the Hub ({no_hub['HF_ENDPOINT']}) cannot be reached to fetch {args[0]}: "), error
    assert (said, hint) == (f"  | {detail}", f"  fix: {fix}")


def test_pull_of_a_real_repo_keeps_the_hubs_own_fix(no_hub, tmp_path):
    """A real preset the Hub cannot give is no typo: no did-you-mean line, the network fix stays."""
    proc = run_r1("pull", "1.5b", env={**no_hub, "R1_HOME": str(tmp_path / "home")}, timeout=60)
    assert proc.returncode == ExitStatus.NO_NETWORK, proc.stderr
    assert "is not a preset" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == "  fix: check the network (a proxy: HTTPS_PROXY), or HF_ENDPOINT for a mirror"
