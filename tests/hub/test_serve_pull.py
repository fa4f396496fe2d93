"""`r1 serve MODEL` on a model not in the cache pulls it first, through olah on localhost (conftest.py): its
--dry-run says whether a start would download and how much, fetching nothing; a start refused by the pull's
checks spawns nothing; on a terminal the stage is r1 pull's bar. The real start (the downloading stage, then
vLLM offline on the cached files, `r1 models` and `r1 rm` while it serves) is test_owned_server.py's."""

from __future__ import annotations

import json
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
    assert not mirror.relay.resolve_requests()  # metadata asked, no file fetched
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


def test_in_the_cache_means_the_snapshot_main_names_with_every_shard(tmp_path):
    """What serve takes for a model in the cache (hub.pull.is_complete, as ensure_cached asks it): the snapshot
    refs/main names, with config.json and each shard its index names; a download cut after config.json (as
    vLLM's own or `hf download` may leave) is pulled again rather than handed to an offline vLLM."""
    from r1cli.hub import pull as hub

    folder = tmp_path / "models--org--m"
    snap = folder / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    (snap / shards[0]).write_bytes(b"x")
    assert not hub.is_complete("org/m", "main", cache=tmp_path)  # no ref names it: vLLM offline would not find it
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc")
    assert not hub.is_complete("org/m", "main", cache=tmp_path)  # a shard missing
    (snap / shards[1]).write_bytes(b"x")
    assert hub.is_complete("org/m", "main", cache=tmp_path)
