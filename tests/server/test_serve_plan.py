"""`r1 serve`'s plan step (serve.lay_out) and GPU memory refusal (serve.memory_problem) on real figures.

This machine has no GPU, so the machine is described as NVML describes a real one: an idle H100 80GB
(nvidia-smi's 81,559 MiB; 79.18 GiB to CUDA, as vLLM's log says, the rest is the driver's reserve) and
the same card while another process held about 21 GiB (tests/data/logs/gpu-0.25-fail-memory-taken-h100.log:
"Free memory on device cuda:0 (58.06/79.18 GiB)"). Model shapes are the distills' config.json fields and
the checkpoints' real sizes; the real start of all this on a GPU is tests/gpu/.
"""

from __future__ import annotations

import json

import pytest

from r1cli import config, gpu
from r1cli.errors import StartFailedError, UsageError
from r1cli.server import cmdline, serve
from test_plan import QWEN_1_5B, QWEN_32B

MIB = 2**20
H100_TOTAL, H100_CUDA = 81_559.0, 79.18 * 1024  # MiB: NVML's total, and what CUDA (vLLM) calls the total


def h100(index: int = 0, used_gib: float = 0.0) -> gpu.Gpu:
    used = used_gib * 1024
    return gpu.Gpu(index=index, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{index}abc", memory_used_mib=used,
                   memory_total_mib=H100_TOTAL, memory_used_pct=round(100 * used / H100_TOTAL, 1), utilization_pct=0,
                   temperature_c=30, power_w=70.0, compute_capability=(9, 0), memory_free_mib=H100_CUDA - used)


def machine(gpus: int, cores: int = 16, **kw) -> serve.Machine:
    cards = [h100(i) for i in range(gpus)]
    return serve.Machine(gpu.NvmlReport(True, "580.95", None, cards), cards, cores, **kw)


@pytest.fixture
def model_1_5b(tmp_path):
    """A local folder of the 1.5B's shape: its config.json and a 3.31 GiB safetensors file (sparse: no disk
    used), the checkpoint size vLLM's H100 log reports."""
    folder = tmp_path / "r1-1.5b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN_1_5B))
    with open(folder / "model.safetensors", "wb") as fh:
        fh.truncate(int(3.31 * 2**30))
    return folder


def lay_out(opts, cfg, found):
    notes: list[str] = []
    chosen = serve.lay_out(opts, cfg, found, notes.append)
    return chosen, notes


def test_one_h100_gets_the_full_window_and_the_api_servers_of_16_cores(model_1_5b):
    opts = cmdline.options_for(str(model_1_5b))
    chosen, notes = lay_out(opts, QWEN_1_5B, machine(1))
    assert notes == []
    assert (opts.tp, opts.pp, opts.dp, opts.max_model_len, opts.api_servers) == (1, 1, 1, 32_768, 4)
    # vLLM's H100 log: "GPU KV cache size: 2,199,584 tokens" with these weights at 0.8.
    assert abs(chosen.kv_tokens_per_replica - 2_199_584) / 2_199_584 < 0.05
    words = cmdline.vllm_argv(opts, has_vllm_cli=True)
    assert words[words.index("--max-model-len") + 1] == "32768" and words[2] == "vllm.entrypoints.cli.main"


def test_gpus_2_runs_two_replicas_and_says_nothing_is_idle(model_1_5b):
    opts = cmdline.options_for(str(model_1_5b), gpus=2)
    chosen, _ = lay_out(opts, QWEN_1_5B, machine(2, cores=32))
    assert (opts.tp, opts.dp, opts.api_servers) == (1, 2, 8) and chosen.idle_note is None
    words = cmdline.vllm_argv(opts, has_vllm_cli=True)
    assert words[words.index("--data-parallel-size") + 1] == "2"


def test_default_on_two_gpus_points_at_the_idle_one(model_1_5b):
    chosen, _ = lay_out(cmdline.options_for(str(model_1_5b)), QWEN_1_5B, machine(2))
    assert chosen.gpus == 1 and "`--gpus all` would run 2 replicas" in chosen.idle_note


def test_explicit_flags_and_flags_after_double_dash_win(model_1_5b):
    opts = cmdline.options_for(str(model_1_5b), tp=2, max_model_len=4096, extra=["--api-server-count", "1"])
    lay_out(opts, QWEN_1_5B, machine(2))
    assert (opts.tp, opts.dp, opts.max_model_len, opts.api_servers) == (2, 1, 4096, 1)
    opts = cmdline.options_for(str(model_1_5b), extra=["--data-parallel-size", "2"])  # the measured form
    lay_out(opts, QWEN_1_5B, machine(2))
    assert opts.dp == 2


def test_fp8_kv_cache_after_double_dash_doubles_the_tokens(model_1_5b):
    plain, _ = lay_out(cmdline.options_for(str(model_1_5b)), QWEN_1_5B, machine(1))
    fp8, _ = lay_out(cmdline.options_for(str(model_1_5b), extra=["--kv-cache-dtype", "fp8"]), QWEN_1_5B, machine(1))
    assert fp8.kv_tokens_per_replica == pytest.approx(2 * plain.kv_tokens_per_replica, rel=0.001)


def test_a_preset_not_downloaded_plans_from_its_parameter_count(tmp_path, monkeypatch):
    """The dry run of a preset works offline: config.PRESETS' parameter count, the window assumed."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    opts = cmdline.options_for("32b", gpus="all")
    chosen, _ = lay_out(opts, None, machine(8, cores=64))
    assert chosen.kv_tokens_per_replica is None and opts.max_model_len == 32_768
    assert opts.tp * opts.dp == 8 and opts.tp >= 2  # 61 GiB of bf16 does not leave KV room on one 0.8 x 79 GiB
    assert any("assumed" in reason for reason in chosen.why)


def test_a_cached_checkpoint_is_measured_not_estimated(tmp_path, monkeypatch):
    """32B's config.json in the Hugging Face cache: the real shape, so the KV figure is computed."""
    snap = tmp_path / "hub" / "models--deepseek-ai--DeepSeek-R1-Distill-Qwen-32B" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(QWEN_32B))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    opts = cmdline.options_for("32b", gpus="all")
    cfg = serve.model_config(opts.model)
    chosen, _ = lay_out(opts, cfg, machine(8, cores=64))
    assert (opts.tp, opts.dp) == (4, 2) and chosen.kv_tokens_per_replica > 16 * 32_768


@pytest.fixture
def other_model(tmp_path):
    """The demo's config.json in a folder of its own: another model, as r1test/demo (the demo's files under a Hub
    id) is, without the demo's defaults."""
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_bytes((config.demo_model_dir() / "config.json").read_bytes())
    return str(folder)


def test_on_the_cpu_the_plan_is_the_kv_cache_of_four_sequences(other_model, monkeypatch):
    """The demo's files as another model (r1test/demo's case): 16 MiB for 4 sequences of 4,096 tokens, given to
    vLLM as --kv-cache-memory-bytes, where vLLM's CPU default took --gpu-mem 0.8 of RAM (18 of 23 GiB)."""
    monkeypatch.delenv(cmdline.KV_SPACE_ENV, raising=False)
    opts = cmdline.options_for(other_model)
    cfg = serve.model_config(opts.model)
    chosen, notes = lay_out(opts, cfg, None)
    assert (chosen.max_model_len, chosen.kv_cache_bytes, opts.kv_cache_bytes) == (4096, 16 * MIB, 16 * MIB)
    assert opts.max_model_len == config.DEFAULT_MAX_MODEL_LEN and notes == []
    args = cmdline.vllm_argv(opts, has_vllm_cli=False)
    assert args[args.index("--kv-cache-memory-bytes") + 1] == str(16 * MIB)
    float32 = cmdline.options_for(opts.model, dtype="float32", max_model_len=1024)
    assert lay_out(float32, cfg, None)[0].kv_cache_bytes == 8 * MIB  # 2 KiB a token in float32


@pytest.mark.parametrize("how, reason", [
    ({"env": "2"}, "  KV cache as VLLM_CPU_KVCACHE_SPACE=2 sets it"),
    ({"gpu_mem": 0.5}, "  KV cache vLLM's own: what --gpu-mem 0.5 of RAM leaves after the weights"),
    ({"extra": ["--kv-cache-memory-bytes", "1G"]}, "  KV cache as given after `--` (--kv-cache-memory-bytes)"),
])
def test_on_the_cpu_the_users_own_sizing_wins(how, reason, other_model, monkeypatch):
    from r1cli.server.plan import describe

    monkeypatch.delenv(cmdline.KV_SPACE_ENV, raising=False)
    if "env" in how:
        monkeypatch.setenv(cmdline.KV_SPACE_ENV, how["env"])
    opts = cmdline.options_for(other_model, gpu_mem=how.get("gpu_mem"), extra=how.get("extra"))
    chosen, _ = lay_out(opts, serve.model_config(opts.model), None)
    assert opts.kv_cache_bytes is None and describe(chosen)[1] == reason
    assert "--kv-cache-memory-bytes" not in cmdline.vllm_argv(opts, has_vllm_cli=False)[:-2]


def test_the_demo_keeps_its_1_gib_and_says_so(monkeypatch):
    from r1cli.server.plan import describe

    monkeypatch.delenv(cmdline.KV_SPACE_ENV, raising=False)
    demo = cmdline.options_for("demo")
    chosen, _ = lay_out(demo, serve.model_config(demo.model), None)
    assert demo.max_model_len == 1024 and demo.kv_cache_bytes is None
    assert describe(chosen) == ["plan: CPU, context window 1,024, KV cache 1.0 GiB (1,048,576 tokens)",
                                "  KV cache as VLLM_CPU_KVCACHE_SPACE=1 sets it (the demo's)"]


def test_no_nvml_means_no_plan_and_says_why(model_1_5b):
    report = gpu.NvmlReport(False, None, "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)")
    opts = cmdline.options_for(str(model_1_5b))
    chosen, notes = lay_out(opts, QWEN_1_5B, serve.Machine(report, [], 8))
    assert chosen is None and opts.max_model_len == 4096
    assert notes == ["no parallel plan (NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)): "
                     "tp 1, pp 1, context window 4,096"]


def test_an_unknown_size_means_no_plan(tmp_path):
    opts = cmdline.options_for("someone/some-model")
    chosen, notes = lay_out(opts, None, machine(1))
    assert chosen is None and notes[0].startswith("no parallel plan (the size of someone/some-model's weights is unknown")


def test_ray_counts_the_clusters_gpus(model_1_5b):
    """`r1 serve 70b --tp 8 --pp 2 --ray` from a node with 8 GPUs in a 16-GPU cluster."""
    opts = cmdline.options_for("70b", tp=8, pp=2, ray=True)
    chosen, _ = lay_out(opts, None, machine(8, ray_gpus=16))
    assert (chosen.tp, chosen.pp, chosen.dp, chosen.gpus) == (8, 2, 1, 16)
    with pytest.raises(UsageError, match="needs 16 GPUs; 8 are present") as refused:
        lay_out(cmdline.options_for("70b", tp=8, pp=2, ray=True), None, machine(8, ray_gpus=8))
    assert refused.value.hint == "8 GPU(s) in the Ray cluster: ask for fewer with --gpus, --tp, --pp or --dp"


def test_more_gpus_than_present_is_a_usage_error(model_1_5b):
    with pytest.raises(UsageError, match=r"--gpus 4 asks for more GPUs than the 2 present") as refused:
        lay_out(cmdline.options_for(str(model_1_5b), gpus=4), QWEN_1_5B, machine(2))
    assert refused.value.hint == "2 GPU(s) here: ask for fewer with --gpus, --tp, --pp or --dp"


def test_ray_not_installed_trusts_the_sizes_given():
    opts = cmdline.options_for("70b", tp=8, pp=2, ray=True)
    chosen, _ = lay_out(opts, None, machine(8, ray_note="Ray is not installed here (no `ray` command): ..."))
    assert chosen.gpus == 16


def test_a_model_too_big_is_refused_before_spawning():
    with pytest.raises(StartFailedError, match=r"the weights \(131.5 GiB\) do not fit 1 GPU"):
        lay_out(cmdline.options_for("70b"), None, machine(1))


# --- GPU memory, from NVML's figures ---------------------------------------------------------------------


def test_memory_taken_by_another_process_is_refused_as_vllm_would():
    """The real failure: 21 GiB taken, --gpu-mem 0.8 wants 63.34 GiB, 58.06 are free."""
    problem = serve.memory_problem([h100(used_gib=79.18 - 58.06)], 0.8, 3.45 * 2**30)
    assert isinstance(problem, StartFailedError)
    assert problem.message == "--gpu-mem 0.8 reserves 63.3 GiB on GPU 0, but only 58.1 of its 79.2 GiB are free"
    assert problem.hint.startswith("use --gpu-mem 0.7 or lower")


def test_weights_larger_than_free_memory_are_refused():
    problem = serve.memory_problem([h100(used_gib=70)], 0.1, 14.2 * 2**30)
    assert problem.message == "the weights need about 14.2 GiB per GPU but GPU 0 has 9.2 GiB free"


@pytest.mark.parametrize("used_gib, gpu_mem", [(0.0, 0.8), (0.0, 0.95), (15.0, 0.8)])
def test_what_fits_starts(used_gib, gpu_mem):
    assert serve.memory_problem([h100(used_gib=used_gib)], gpu_mem, 3.45 * 2**30) is None


def test_every_gpu_of_the_plan_is_checked():
    problem = serve.memory_problem([h100(0), h100(1, used_gib=40)], 0.8, 3.45 * 2**30)
    assert "on GPU 1" in problem.message


def test_the_readme_shows_the_cpu_plan_line_r1_prints(other_model, monkeypatch):
    """README's CPU plan line is r1test/demo's (the demo's config.json), at the default window; 448 MiB the 1.5B's."""
    from conftest import ROOT

    from r1cli.server.plan import ModelShape, cpu_plan, describe

    monkeypatch.delenv(cmdline.KV_SPACE_ENV, raising=False)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    opts = cmdline.options_for(other_model)
    chosen, _ = lay_out(opts, serve.model_config(opts.model), None)
    assert f"`r1: {describe(chosen)[0]}` for `r1test/demo` (448 MiB for the 1.5B)" in readme
    assert cpu_plan(ModelShape.from_config(QWEN_1_5B, 0).kv_bytes_per_token, 4096).kv_cache_bytes == 448 * MIB
