"""`r1 pull` against olah on localhost (conftest.py): what it fetches, its progress, Ctrl-C and resume, the
Hub's refusals, the size check, bad input and two pulls at once; and the pure parts (which repo, which files)."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from hub.conftest import BAD_TOKEN, DEMO, GATED, REPO, free_port
from hub.helpers import r1, r1_process, spawn
from r1cli import config
from r1cli.errors import ExitStatus, UsageError
from r1cli.hub import pull as hub

pytestmark = pytest.mark.timeout(180)

WANTED = {"config.json", "generation_config.json", "model.safetensors", "questions.json", "special_tokens_map.json",
          "tokenizer.json", "tokenizer_config.json"}  # not README.md, not original/consolidated.pth
WEIGHTS = DEMO / "model.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot_files(cache: Path) -> dict[str, Path]:
    snaps = list((cache / "models--r1test--demo" / "snapshots").glob("*"))
    assert len(snaps) == 1, snaps
    return {p.relative_to(snaps[0]).as_posix(): p for p in snaps[0].rglob("*") if p.is_file()}


def assert_pulled_whole(cache: Path) -> None:
    files = snapshot_files(cache)
    assert set(files) == WANTED
    for name, path in files.items():
        assert sha256(path) == sha256(DEMO / name), name
    assert not list(cache.rglob("*.incomplete"))


def assert_untouched(cache: Path, repo: str = REPO) -> None:
    """Nothing of REPO in the cache: no blob, no snapshot, no ref (a refused pull writes nothing)."""
    assert not (cache / ("models--" + repo.replace("/", "--"))).exists()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("r1: error:")]
    assert len(lines) == 1, err
    assert "fix:" in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ pulling
def test_pull_fetches_the_files_vllm_loads_with_plain_lines_off_a_terminal(hub_env, mirror):
    status, out, err = r1_process("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    assert out.strip() == str(next(iter(snapshot_files(hub_env).values())).parent)  # stdout: the snapshot only
    assert "fetching model.safetensors (2.6 MB)" in err and "pulled r1test/demo@" in err
    assert "\x1b[" not in err  # plain lines, no bar
    assert (hub_env / "models--r1test--demo" / "refs" / "main").is_file()
    # What was served: the files vLLM loads once each (plus HTTP heads), nothing else of the repo.
    assert not mirror.relay.resolve_requests("README.md") and not mirror.relay.resolve_requests("consolidated.pth")
    assert len(mirror.relay.resolve_requests("model.safetensors")) == 1
    weights = sum(f.stat().st_size for f in DEMO.iterdir() if f.name in WANTED)
    assert weights <= mirror.relay.served < weights + 60_000

    mirror.relay.reset()
    status, _, err = r1_process("pull", REPO)
    assert status == 0 and "in the cache already" in err
    assert not mirror.relay.resolve_requests()  # the second pull asks the metadata, fetches no file


def test_pull_draws_one_rich_bar_on_a_terminal(hub_env, mirror):
    status, out, err = r1("pull", REPO, tty_stderr=True)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    assert "r1test/demo" in err and "2.6/2.6 MB" in err  # bytes done / total
    assert "MB/s" in err or "kB/s" in err  # the rate
    assert "model.safetensors" in err  # the file being fetched
    assert "fetching" not in err  # not the plain lines


def test_ctrl_c_keeps_what_was_fetched_and_the_next_pull_resumes_it(hub_env, mirror):
    mirror.relay.rate = 1_000_000  # bytes/s: the 2.6 MB weights take ~2.6 s, long enough to interrupt
    proc = spawn("pull", REPO)
    deadline = time.monotonic() + 60
    while mirror.relay.served < 1_200_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.INTERRUPTED, err
    assert "interrupted:" in one_error_line(err) and "continues from there" in err
    partial = list((hub_env / "models--r1test--demo" / "blobs").glob("*.incomplete"))
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert 500_000 < kept < WEIGHTS.stat().st_size
    assert not list((hub_env / "models--r1test--demo").glob("snapshots/*/config.json"))  # config.json comes last
    assert not hub.is_complete(REPO, cache=hub_env)  # serve would pull again, not hand vLLM half a model

    mirror.relay.rate = None
    mirror.relay.reset()
    status, _, err = r1_process("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    # Resumed where it stopped: one Range request from the bytes kept; the small files done before the
    # interrupt not asked for again; the bytes served are the rest of the weights and config.json.
    (request,) = mirror.relay.resolve_requests("model.safetensors")
    assert f"range: bytes={kept}-" in request
    assert not mirror.relay.resolve_requests("tokenizer.json")
    rest = WEIGHTS.stat().st_size - kept + (DEMO / "config.json").stat().st_size
    assert rest <= mirror.relay.served < rest + 20_000


def test_two_pulls_of_one_model_wait_for_each_other_and_fetch_it_once(hub_env, mirror):
    mirror.relay.rate = 50_000  # the first pull crawls until the second is seen waiting for it
    first = spawn("pull", REPO)
    while mirror.relay.served < 100_000 and first.poll() is None:
        time.sleep(0.02)
    second = spawn("pull", REPO)
    seen = ""
    while "waiting" not in seen and (line := second.stderr.readline()):
        seen += line
    mirror.relay.rate = None
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    err2 = seen + err2
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "another pull of r1test/demo is running: waiting" in err2
    assert "nothing to fetch" in err2 or "pulled" in err2
    assert out1 == out2
    assert_pulled_whole(hub_env)
    assert len(mirror.relay.resolve_requests("model.safetensors")) == 1


# ------------------------------------------------------------------------------------------ the Hub says no
def test_a_repo_that_does_not_exist(hub_env):
    status, _, err = r1_process("pull", "r1test/no-such-model")
    assert status == ExitStatus.NOT_FOUND
    assert "no model r1test/no-such-model on the Hub" in one_error_line(err)
    assert_untouched(hub_env, "r1test/no-such-model")


def test_a_gated_repo_without_a_token(hub_env):
    # olah cannot say "gated": the relay answers as the Hub does for a gated repo (conftest.py, _CANNED).
    status, _, err = r1_process("pull", GATED)
    assert status == ExitStatus.GATED
    assert "is gated" in one_error_line(err) and "HF_TOKEN" in err
    assert_untouched(hub_env, GATED)


def test_a_token_the_hub_refuses(hub_env):
    # Stand-in as above: the Hub's answer to an invalid token.
    status, _, err = r1_process("pull", REPO, env={"HF_TOKEN": BAD_TOKEN})
    assert status == ExitStatus.BAD_TOKEN
    assert "refused the token" in one_error_line(err)
    assert_untouched(hub_env)


def test_a_revision_that_does_not_exist(hub_env):
    status, _, err = r1_process("pull", REPO, "--revision", "no-such-branch")
    assert status == ExitStatus.BAD_REVISION
    assert "has no revision 'no-such-branch'" in one_error_line(err)
    assert_untouched(hub_env)


def test_no_network(hub_env):
    status, _, err = r1_process("pull", REPO, env={"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert status == ExitStatus.NO_NETWORK
    assert "cannot be reached" in one_error_line(err)
    status, _, err = r1_process("pull", REPO, env={"HF_HUB_OFFLINE": "1"})
    assert status == ExitStatus.NO_NETWORK and "HF_HUB_OFFLINE" in one_error_line(err)
    assert_untouched(hub_env)


def test_a_disk_too_small_is_refused_before_any_byte(hub_env, mirror):
    status, _, err = r1_process("pull", REPO, env={hub.FREE_BYTES_OVERRIDE: "1000000"})
    assert status == ExitStatus.NO_SPACE
    line = one_error_line(err)
    assert "needs 2.6 MB" in line and "1.0 MB free" in line and str(hub_env) in line
    assert "HF_HOME" in err
    assert mirror.relay.fetched() <= {"config.json"}  # read to plan (its auto_map), no weights
    assert_untouched(hub_env)


@pytest.mark.parametrize("model, why", [("", "MODEL is empty"), ("../models/x", "is a path"),
                                        ("org/../x", "is a path"), ("deepseek ai/R1", "has a space"),
                                        ("org/na--me", "is not a Hub id"), ("a/b/c", "is not a Hub id")])
def test_bad_input_is_one_line_and_writes_nothing(hub_env, mirror, model, why):
    status, _, err = r1("pull", model)
    assert status == ExitStatus.USAGE
    assert why in one_error_line(err)
    assert not mirror.relay.requests
    assert not hub_env.exists() or not any(hub_env.glob("models--*"))


def test_dry_run_says_what_would_be_fetched_and_fetches_nothing(hub_env, mirror):
    status, out, err = r1("pull", REPO, "--dry-run", "--json")
    assert status == 0, err
    import json

    plan = json.loads(out)
    assert plan["to_fetch"] == plan["total"] == sum((DEMO / n).stat().st_size for n in WANTED)
    assert {f["name"] for f in plan["files"]} == WANTED and plan["files"][-1]["name"] == "config.json"
    assert mirror.relay.fetched() == {"config.json"}  # read to plan (its auto_map), no weights
    assert_untouched(hub_env)


# ------------------------------------------------------------------------------------------ serve's function
def test_ensure_cached_pulls_once_then_finds_the_model(hub_env, mirror):
    from r1cli.console import Environment
    import io

    env = Environment(_stderr=io.StringIO())
    plan = hub.ensure_cached(env, REPO, dry_run=True)
    assert plan is not None and plan.needed and plan.to_fetch == plan.total > 2_500_000
    assert_untouched(hub_env)
    plan = hub.ensure_cached(env, REPO)
    assert plan is not None and plan.fetched == plan.total
    assert_pulled_whole(hub_env)
    assert hub.ensure_cached(env, REPO) is None
    assert hub.ensure_cached(env, str(config.demo_model_dir())) is None  # a folder: nothing to pull


# ------------------------------------------------------------------------------------------ pure parts
def test_resolve_repo_presets_and_quant():
    assert hub.resolve_repo("1.5b") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert hub.resolve_repo("7b", "awq") == "casperhansen/deepseek-r1-distill-qwen-7b-awq"
    assert hub.resolve_repo("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "gptq_marlin").startswith("ModelCloud/")
    assert hub.resolve_repo("casperhansen/deepseek-r1-distill-qwen-7b-awq", "awq").endswith("7b-awq")
    assert hub.resolve_repo("someone/model") == "someone/model"
    for model, quant in (("1.5b", "gptq"), ("someone/model", "awq"), ("7b", "fp8"), ("demo", None)):
        with pytest.raises(UsageError):
            hub.resolve_repo(model, quant)


def test_import_stays_cheap():
    import subprocess
    import sys

    code = ("import sys, r1cli.hub.pull, r1cli.hub.cache; "
            "print([m for m in ('huggingface_hub', 'rich.progress', 'httpx') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_a_server_that_ignores_range_gets_the_file_whole_again(hub_env, mirror):
    """olah's local mirror answers a Range with the whole file (200): the resumed part is dropped and the
    file fetched whole, never appended to what was kept."""
    import json

    status, out, err = r1("pull", REPO, "--dry-run", "--json")
    assert status == 0, err
    blobs = hub_env / "models--r1test--demo" / "blobs"
    blobs.mkdir(parents=True)
    etag = next(f for f in json.loads(out)["files"] if f["name"] == "model.safetensors")["etag"]
    (blobs / f"{etag}.incomplete").write_bytes(WEIGHTS.read_bytes()[:1_000_000])
    status, _, err = r1("pull", REPO, env={"HF_ENDPOINT": f"http://127.0.0.1:{mirror.relay.api_port}"})
    assert status == 0, err
    assert_pulled_whole(hub_env)
