"""The parallel plan (r1cli/server/plan.py) on model shapes from the distills' config.json files and GPU
figures from real vLLM logs (tests/data/logs, ../shared/gpu/README.md)."""

from __future__ import annotations

import pytest

from r1cli.server.plan import GiB, ModelShape, PlanError, choose_api_servers, choose_window, plan

# config.json of DeepSeek-R1-Distill-Qwen-1.5B / -7B / -32B and -Llama-70B (the fields the plan reads)
QWEN_1_5B = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
             "max_position_embeddings": 131072}
QWEN_7B = {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
           "max_position_embeddings": 131072}
QWEN_32B = {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 40, "num_key_value_heads": 8,
            "max_position_embeddings": 131072}
LLAMA_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
             "max_position_embeddings": 131072}
# vLLM on the H100 (tests/data/logs): "Model loading took 3.45 GiB", total 79.18 GiB,
# "GPU KV cache size: 2,199,584 tokens" at --gpu-memory-utilization 0.8.
H100 = 79.18 * GiB
ONE_5B = ModelShape.from_config(QWEN_1_5B, 3.45 * GiB)


def test_kv_bytes_per_token_from_config():
    assert ONE_5B.kv_bytes_per_token == 28 * 1024  # 28 KiB per token in bf16 (seed notes)
    assert ModelShape.from_config(LLAMA_70B, 0).kv_bytes_per_token == 320 * 1024


def test_kv_tokens_match_the_real_h100_log_within_3_percent():
    p = plan(ONE_5B, gpus_present=1, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16)
    assert abs(p.kv_tokens_per_replica - 2_199_584) / 2_199_584 < 0.03


def test_1_5b_on_one_h100_gets_r1s_full_window_and_four_api_servers():
    p = plan(ONE_5B, gpus_present=1, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16)
    assert (p.tp, p.pp, p.dp, p.max_model_len, p.api_servers) == (1, 1, 1, 32_768, 4)
    assert p.idle_note is None


def test_1_5b_on_two_gpus_runs_replicas_not_tensor_parallel():
    p = plan(ONE_5B, gpus_present=2, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=32, gpus=2)
    assert (p.tp, p.dp, p.gpus, p.api_servers) == (1, 2, 2, 8)
    assert "replicas, not tensor parallel" in p.why[0]


def test_idle_gpus_are_pointed_out():
    p = plan(ONE_5B, gpus_present=2, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=32)
    assert p.gpus == 1 and p.idle_note.startswith("1 more GPU(s) sit idle: `--gpus all` would run 2 replicas")


def test_32b_on_eight_h100s_is_tp4_times_two_replicas():
    shape = ModelShape.from_config(QWEN_32B, 61.0 * GiB)
    p = plan(shape, gpus_present=8, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=64, gpus="all")
    assert (p.tp, p.dp, p.max_model_len) == (4, 2, 32_768)


def test_70b_on_eight_h100s_is_tp8():
    shape = ModelShape.from_config(LLAMA_70B, 131.5 * GiB)
    p = plan(shape, gpus_present=8, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=64, gpus="all")
    assert (p.tp, p.dp) == (8, 1)
    assert "need tensor parallel 8" in p.why[0]


def test_70b_on_one_gpu_is_refused_with_its_size():
    shape = ModelShape.from_config(LLAMA_70B, 131.5 * GiB)
    with pytest.raises(PlanError, match=r"weights \(131.5 GiB\) do not fit 1 GPU"):
        plan(shape, gpus_present=1, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16)


def test_7b_on_a_24_gib_card_gets_a_smaller_window():
    shape = ModelShape.from_config(QWEN_7B, 14.2 * GiB)
    p = plan(shape, gpus_present=1, gpu_total_bytes=24 * GiB, gpu_mem=0.8, cpu_count=8)
    assert p.max_model_len == 2_048 and p.kv_tokens_per_replica // p.max_model_len >= 16


@pytest.mark.parametrize("kwargs, message", [
    ({"gpus": 3}, "more GPUs than the 2 present"),
    ({"gpus": 0}, "at least 1"),
    ({"tp": 2, "dp": 2}, "needs 4 GPUs; 2 are present"),
])
def test_impossible_requests(kwargs, message):
    with pytest.raises(PlanError, match=message):
        plan(ONE_5B, gpus_present=2, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16, **kwargs)


def test_explicit_overrides_are_kept():
    p = plan(ONE_5B, gpus_present=2, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16, tp=2, max_model_len=4096,
             api_servers=1)
    assert (p.tp, p.dp, p.max_model_len, p.api_servers) == (2, 1, 4096, 1)


@pytest.mark.parametrize("kv_tokens, max_position, expected", [
    (2_199_584, 131072, 32_768),
    (300_000, 131072, 16_384),
    (300_000, 8_192, 8_192),  # never past the model's own limit
    (20_000, 131072, 1_024),  # not even 2,048: a round window that still holds 16
])
def test_window_choice(kv_tokens, max_position, expected):
    assert choose_window(kv_tokens, max_position, None) == expected


@pytest.mark.parametrize("cpus, dp, expected", [(2, 1, 1), (16, 1, 4), (32, 2, 8), (8, 2, 2), (64, 1, 4)])
def test_api_servers(cpus, dp, expected):
    assert choose_api_servers(cpus, dp, None) == expected


# --- a preset not downloaded: its size from the parameter count, the window assumed -------------------------


def test_weights_only_shape_plans_the_split_and_assumes_the_window():
    # config.PRESETS["70b"]: 70.6 B parameters in bf16.
    shape = ModelShape.weights_only(70.6e9 * 2)
    p = plan(shape, gpus_present=8, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=64, gpus="all")
    assert p.kv_tokens_per_replica is None and p.max_model_len == 32_768
    assert p.tp * p.dp == 8 and p.tp >= 4  # 131.5 GiB does not fit two GPUs' 0.8 x 79 GiB
    assert any(reason.startswith("context window 32,768 assumed: config.json is not on disk") for reason in p.why)


def test_weights_only_shape_keeps_a_window_given():
    p = plan(ModelShape.weights_only(3.5 * GiB), gpus_present=1, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=2,
             max_model_len=4096)
    assert p.max_model_len == 4096 and not any("assumed" in reason for reason in p.why)


def test_a_window_given_that_the_kv_cache_cannot_hold_is_pointed_out():
    shape = ModelShape.from_config(QWEN_7B, 14.2 * GiB)
    p = plan(shape, gpus_present=1, gpu_total_bytes=24 * GiB, gpu_mem=0.8, cpu_count=8, max_model_len=131_072)
    assert "vLLM will refuse a window it cannot hold once" in p.why[1]


# --- what `r1 serve` prints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, expected", [
    ({"gpus_present": 1}, "1 GPU"),
    ({"gpus_present": 2, "tp": 2}, "tp 2 on 2 GPUs"),
    ({"gpus_present": 2, "gpus": 2}, "2 replicas on 2 GPUs"),
    ({"gpus_present": 8, "gpus": "all", "tp": 4}, "2 replicas x tp 4 on 8 GPUs"),
    ({"gpus_present": 16, "tp": 8, "pp": 2}, "tp 8 x pp 2 on 16 GPUs"),
])
def test_layout_names_the_split(kwargs, expected):
    from r1cli.server.plan import layout

    assert layout(plan(ONE_5B, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16, **kwargs)) == expected


def test_describe_gives_the_figures_the_reasons_and_the_idle_gpus():
    from r1cli.server.plan import describe

    lines = describe(plan(ONE_5B, gpus_present=2, gpu_total_bytes=H100, gpu_mem=0.8, cpu_count=16))
    assert lines[0] == "plan: 1 GPU, context window 32,768, 4 API servers"
    assert lines[1].startswith("  weights 3.5 GiB per GPU, KV cache about 2,1") and lines[1].endswith(" tokens per replica")
    assert lines[2].startswith("  the weights (3.5 GiB) fit one GPU: replicas, not tensor parallel")
    assert lines[-1] == ("  note: 1 more GPU(s) sit idle: `--gpus all` would run 2 replicas (about 2x the throughput "
                         "at high concurrency)")


# --- the CPU: a KV cache of a few full-length sequences, not vLLM's share of RAM (issue 32) ---------------------
# The demo's config.json (r1cli/demo_model): 2 layers, 1 KV head of 128: 1 KiB per token in bf16.
DEMO = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 4096}


@pytest.mark.parametrize("cfg, window, size, head", [
    # r1test/demo on the CPU took 18 GiB of a 23 GiB machine at vLLM's default; 16 MiB now.
    (DEMO, 4096, 16 * 2**20, "plan: CPU, context window 4,096, KV cache 16 MiB (16,384 tokens)"),
    (DEMO, 1024, 4 * 2**20, "plan: CPU, context window 1,024, KV cache 4 MiB (4,096 tokens)"),
    (QWEN_1_5B, 4096, 448 * 2**20, "plan: CPU, context window 4,096, KV cache 448 MiB (16,384 tokens)"),
    (QWEN_32B, 32_768, 32 * GiB, "plan: CPU, context window 32,768, KV cache 32.0 GiB (131,072 tokens)"),
])
def test_the_cpu_kv_cache_holds_four_full_length_sequences(cfg, window, size, head):
    from r1cli.server.plan import cpu_plan, describe

    chosen = cpu_plan(ModelShape.from_config(cfg, 0).kv_bytes_per_token, window)
    assert chosen.kv_cache_bytes == size and chosen.kv_tokens == 4 * window
    lines = describe(chosen)
    assert lines[0] == head
    assert lines[1].startswith(f"  KV cache for 4 full-length sequences of {window:,} tokens at ")
    assert lines[1].endswith("not vLLM's share of RAM (--gpu-mem F reserves that fraction instead)")


def test_the_cpu_kv_cache_rounds_up_to_whole_mib():
    from r1cli.server.plan import cpu_plan

    assert cpu_plan(1000.0, 1000).kv_cache_bytes == 4 * 2**20  # 4,000,000 bytes: 3.8 MiB, rounded up


def test_a_users_own_sizing_is_left_to_vllm_and_named():
    from r1cli.server.plan import cpu_plan, describe

    chosen = cpu_plan(1024.0, 4096, sized_by="as VLLM_CPU_KVCACHE_SPACE=2 sets it", sized_bytes=2 * GiB)
    assert chosen.kv_cache_bytes is None
    assert describe(chosen) == ["plan: CPU, context window 4,096, KV cache 2.0 GiB (2,097,152 tokens)",
                                "  KV cache as VLLM_CPU_KVCACHE_SPACE=2 sets it"]
    unknown = cpu_plan(None, 4096)  # config.json not on disk yet (a dry run before the pull)
    assert unknown.kv_cache_bytes is None and describe(unknown)[0] == "plan: CPU, context window 4,096"
