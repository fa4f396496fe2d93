"""`r1 serve MODEL` on a model not in the cache pulls it first, through olah on localhost (conftest.py): its
--dry-run says whether a start would download and how much, fetching nothing; a start refused by the pull's
checks spawns nothing; on a terminal the stage is r1 pull's bar. The real start (the downloading stage, then
vLLM offline on the cached files, `r1 models` and `r1 rm` while it serves) is test_owned_server.py's."""

from __future__ import annotations

import shlex

import pytest

from hub.conftest import DEMO, REPO, free_port
from hub.helpers import Tty, r1_process
from hub.test_pull import WANTED, assert_pulled_whole, assert_untouched, one_error_line
from r1cli.errors import ExitStatus
from r1cli.hub.pull import human

pytestmark = pytest.mark.timeout(120)

TOTAL = sum(f.stat().st_size for f in DEMO.iterdir() if f.name in WANTED)  # what a pull of r1test/demo fetches
# The mirror's repo is the demo's files under a Hub id, so it gets the demo's CPU settings by hand: the
# demo's defaults (cmdline.DEMO_DEFAULTS) and KV cache size apply to the embedded demo alone.
CPU_FLAGS = ["--dtype", "bfloat16", "--gpu-mem", "0.3", "--max-model-len", "1024"]


# ------------------------------------------------------------------------------------------ --dry-run
def test_dry_run_says_a_start_would_download_and_how_much_fetching_nothing(hub_env, mirror):
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS)
    assert status == 0, err
    assert (f"r1: {REPO} is not in the Hugging Face cache: a start downloads {human(TOTAL)} of {human(TOTAL)} first "
            f"({len(WANTED)} files; ") in err and f"free in {hub_env}), then starts vLLM offline on them" in err
    words = shlex.split(out)
    assert "HF_HUB_OFFLINE=1" in words and words[words.index("--model") + 1] == REPO  # the command a start runs
    assert mirror.relay.fetched() == {"config.json"}  # metadata and config.json asked, no weights fetched
    assert_untouched(hub_env)

    assert r1_process("pull", REPO)[0] == 0
    mirror.relay.reset()
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS)
    assert status == 0, err
    assert f"r1: {REPO} is in the Hugging Face cache: a start downloads nothing" in err
    assert not mirror.relay.requests  # in the cache: the Hub is not even asked


def test_dry_run_ends_in_the_error_the_start_would_end_in(hub_env, mirror):
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), env={"R1_FREE_BYTES_OVERRIDE": "1000"})
    assert status == ExitStatus.NO_SPACE, err
    assert "--model r1test/demo" in out  # the command is shown all the same
    assert one_error_line(err).startswith(f"r1: error: a start would fail: {REPO} needs {human(TOTAL)} and the cache's "
                                          "filesystem has 1.0 kB free")
    status, out, err = r1_process("serve", "r1test/no-such-model", "--dry-run", "--port", str(free_port()))
    assert status == ExitStatus.NOT_FOUND, err
    assert "a start would fail: no model r1test/no-such-model on the Hub" in one_error_line(err)
    assert_untouched(hub_env)


# ------------------------------------------------------------------------------------------ a start the pull refuses
@pytest.mark.parametrize("model, env, status, message", [
    (REPO, {"R1_FREE_BYTES_OVERRIDE": "1000"}, ExitStatus.NO_SPACE,
     f"r1: error: {REPO} needs {human(TOTAL)} and the cache's filesystem has 1.0 kB free"),
    ("r1test/no-such-model", {}, ExitStatus.NOT_FOUND, "r1: error: no model r1test/no-such-model on the Hub"),
    (REPO, {"HF_HUB_OFFLINE": "1"}, ExitStatus.NO_NETWORK,
     f"r1: error: {REPO} is not in the cache and HF_HUB_OFFLINE forbids downloading it"),
])
def test_a_start_the_pull_refuses_spawns_nothing(hub_env, mirror, tmp_path, model, env, status, message):
    home = tmp_path / "r1-home"
    code, out, err = r1_process("serve", model, "--port", str(free_port()), "-d", env={**env, "R1_HOME": str(home)})
    assert code == status, err
    assert out == "" and one_error_line(err).startswith(message)
    servers = home / "servers"
    assert "launching vLLM" not in err and (not servers.exists() or not any(servers.iterdir()))  # no record
    assert_untouched(hub_env)


def test_the_downloading_stage_draws_r1_pulls_bar_under_the_servers_name(hub_env, mirror):
    """On a terminal the stage is r1 pull's Rich bar, its description the stage: "NAME: downloading REPO"."""
    from r1cli.commands import serve as serve_cmd
    from r1cli.console import Environment
    from r1cli.server import cmdline

    err = Tty()
    serve_cmd.pull_first(Environment(_stderr=err), cmdline.options_for(REPO), REPO)
    text = err.getvalue()
    assert f"demo: downloading {REPO}" in text and "\x1b[" in text  # the bar, drawn
    assert f"r1: demo: downloaded {human(TOTAL)} in " in text
    assert_pulled_whole(hub_env)


def test_a_snapshot_of_config_json_alone_is_not_in_the_cache_for_any_command(hub_env, mirror):
    """What AutoConfig.from_pretrained (or a vLLM start cut short) leaves: refs/main and config.json. serve
    --dry-run says a start downloads the rest, models lists nothing, doctor says not cached; serve's pull stage
    fetches the rest; then all of them agree it is there (one rule: hub.files.missing_to_serve)."""
    import io
    import json

    from huggingface_hub import hf_hub_download

    from hub.helpers import r1
    from r1cli.commands import doctor
    from r1cli.commands import serve as serve_cmd
    from r1cli.console import Environment
    from r1cli.server import cmdline

    hf_hub_download(REPO, "config.json", cache_dir=hub_env, endpoint=mirror.endpoint)  # as AutoConfig does
    assert (hub_env / "models--r1test--demo" / "refs" / "main").is_file()
    config_size = (DEMO / "config.json").stat().st_size

    status, _, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS)
    assert status == 0, err
    assert (f"r1: {REPO} is not in the Hugging Face cache: a start downloads {human(TOTAL - config_size)} of "
            f"{human(TOTAL)} first ({len(WANTED) - 1} files; {human(config_size)} of it is there already") in err
    assert json.loads(r1("models", "--json")[1]) == []
    check = doctor.check_model(REPO, None, reachable=lambda: True)
    assert check.status == doctor.OK and "not cached yet (its snapshot lacks a tokenizer" in check.detail

    serve_cmd.pull_first(Environment(_stderr=io.StringIO()), cmdline.options_for(REPO), REPO)
    assert_pulled_whole(hub_env)
    status, _, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS)
    assert f"r1: {REPO} is in the Hugging Face cache: a start downloads nothing" in err
    (listed,) = json.loads(r1("models", "--json")[1])
    assert listed["repo"] == REPO and listed["refs"] == ["main"]
    assert "is in the Hugging Face cache" in doctor.check_model(REPO, None, reachable=lambda: True).detail


# ------------------------------------------------------------------------------------------ what vLLM flags name
@pytest.mark.parametrize("extra, expected", [
    ([], [("m/x", None, False, None)]),
    (["--revision", "v2"], [("m/x", "v2", False, None)]),
    (["--tokenizer=org/tok", "--tokenizer-revision", "abc"], [("m/x", None, False, None), ("org/tok", "abc", True, "--tokenizer")]),
    (["--speculative-config", '{"model": "org/draft", "num_speculative_tokens": 3, "revision": "r"}'],
     [("m/x", None, False, None), ("org/draft", "r", False, "--speculative-config")]),
    (["-sc", '{"method": "ngram", "num_speculative_tokens": 3}'], [("m/x", None, False, None)]),
    (["--speculative-config", "{not json"], [("m/x", None, False, None)]),
    (["--enforce-eager", "--tokenizer", "/local/tok"], [("m/x", None, False, None), ("/local/tok", None, True, "--tokenizer")]),
])
def test_models_to_pull_reads_what_vllm_flags_name(extra, expected):
    from r1cli.commands.serve import models_to_pull

    assert models_to_pull("m/x", extra) == expected


def test_dry_run_says_what_the_tokenizer_flag_downloads_and_refuses_a_revision_the_repo_lacks(hub_env, mirror):
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS, "--",
                                  "--tokenizer", REPO)
    assert status == 0, err
    tokenizer = TOTAL - (DEMO / "model.safetensors").stat().st_size
    assert (f"r1: {REPO} (--tokenizer) is not in the Hugging Face cache: a start downloads {human(tokenizer)} of "
            f"{human(tokenizer)} first ({len(WANTED) - 1} files;") in err
    assert "--tokenizer r1test/demo" in out  # handed to vLLM as given

    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS, "--",
                                  "--revision", "no-such-branch")
    assert status == ExitStatus.BAD_REVISION, err
    assert "a start would fail: r1test/demo has no revision 'no-such-branch'" in one_error_line(err)
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS, "--",
                                  "--tokenizer", "r1test/no-such-model")
    assert status == ExitStatus.NOT_FOUND, err
    assert "a start would fail: --tokenizer r1test/no-such-model: no model r1test/no-such-model" in one_error_line(err)
    assert_untouched(hub_env)


def test_load_format_dummy_pulls_config_and_tokenizer_alone(hub_env, mirror):
    """`-- --load-format dummy`: vLLM makes random weights and reads no weight file, so a start fetches the
    rest of the repo but its weights; a snapshot without them is then ready for that start, and still not for
    a plain one."""
    from r1cli.commands import serve as serve_cmd
    from r1cli.console import Environment
    from r1cli.server import cmdline

    dummy = ["--", "--load-format", "dummy"]
    no_weights = TOTAL - (DEMO / "model.safetensors").stat().st_size
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS, *dummy)
    assert status == 0, err
    assert (f"r1: {REPO} is not in the Hugging Face cache: a start downloads {human(no_weights)} of "
            f"{human(no_weights)} first ({len(WANTED) - 1} files;") in err
    assert "--load-format dummy" in out  # handed to vLLM as given

    opts = cmdline.options_for(REPO)
    opts.extra = dummy[1:]
    serve_cmd.pull_first(Environment(_stderr=Tty()), opts, REPO)
    assert "model.safetensors" not in mirror.relay.fetched() and "tokenizer.json" in mirror.relay.fetched()
    mirror.relay.reset()
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS, *dummy)
    assert f"r1: {REPO} is in the Hugging Face cache: a start downloads nothing" in err
    assert not mirror.relay.requests
    status, out, err = r1_process("serve", REPO, "--dry-run", "--port", str(free_port()), *CPU_FLAGS)
    assert (f"r1: {REPO} is not in the Hugging Face cache: a start downloads {human(TOTAL - no_weights)} of "
            f"{human(TOTAL)} first (1 file;") in err
