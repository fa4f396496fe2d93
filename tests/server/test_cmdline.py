"""vLLM command-line building: every r1 serve flag maps to vLLM's own."""

from __future__ import annotations

import shlex
import socket

import pytest
from conftest import free_port

from r1cli import config
from r1cli.cli import run
from r1cli.errors import ExitStatus, UsageError
from r1cli.server import cmdline
from r1cli.server.cmdline import ServeOptions

PY = "/venv/bin/python"


def argv(**kw) -> list[str]:
    return cmdline.vllm_argv(ServeOptions(**kw), has_vllm_cli=True, python=PY)


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_defaults_follow_the_article_except_host():
    args = argv()
    # The OpenAI server module, not `vllm serve`: it starts faster (`vllm serve` imports every subcommand).
    assert args[:5] == [PY, "-m", "vllm.entrypoints.openai.api_server", "--model",
                        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert flag(args, "--served-model-name") == "DeepSeek-R1-Distill-Qwen-1.5B"
    assert flag(args, "--gpu-memory-utilization") == "0.8"
    assert flag(args, "--max-model-len") == "4096"
    assert flag(args, "--dtype") == "auto"
    assert flag(args, "--host") == "127.0.0.1"
    assert flag(args, "--port") == "8000"
    assert flag(args, "--reasoning-parser") == "deepseek_r1"
    assert "--enable-prefix-caching" in args
    assert "--quantization" not in args and "--tensor-parallel-size" not in args
    assert "--data-parallel-size" not in args and "--api-server-count" not in args


def test_several_api_servers_need_vllm_serve():
    """vLLM runs more than one API server process only under `vllm serve` (entrypoints/cli/serve.py)."""
    args = argv(api_servers=4)
    assert args[:5] == [PY, "-m", "vllm.entrypoints.cli.main", "serve", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert flag(args, "--api-server-count") == "4"
    assert "--api-server-count" not in argv(api_servers=1)  # the module runs one; the flag would be news to it
    on_cpu = cmdline.vllm_argv(ServeOptions(model="m", api_servers=4), has_vllm_cli=False, python=PY)
    assert on_cpu[2] == "vllm.entrypoints.openai.api_server" and "--api-server-count" not in on_cpu


def test_vllm_cpu_uses_the_api_server_module():
    args = cmdline.vllm_argv(ServeOptions(model="m"), has_vllm_cli=False, python=PY)
    assert args[:5] == [PY, "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]


def test_vllm_cpu_serves_without_chunked_prefill():
    """vllm-cpu 0.32 dies on seeded requests whose prefill is chunked (test_seeded_load.py shows it live)."""
    args = cmdline.vllm_argv(ServeOptions(model="m", cpu=True), has_vllm_cli=False, python=PY)
    assert "--no-enable-chunked-prefill" in args
    assert "--no-enable-chunked-prefill" not in cmdline.vllm_argv(ServeOptions(model="m"), has_vllm_cli=True, python=PY)
    given = cmdline.vllm_argv(ServeOptions(model="m", cpu=True, extra=["--enable-chunked-prefill"]),
                              has_vllm_cli=False, python=PY)
    assert "--no-enable-chunked-prefill" not in given  # the user's own choice stands


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
    ({"dp": 2}, ["--data-parallel-size", "2"]),
    ({"api_servers": 8}, ["--api-server-count", "8"]),
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
    assert "--data-parallel-backend" not in args


def test_replicas_over_ray_use_its_data_parallel_backend():
    args = argv(tp=8, dp=2, ray=True)
    assert flag(args, "--data-parallel-size") == "2" and flag(args, "--data-parallel-backend") == "ray"


@pytest.mark.parametrize("extra, expected", [
    (["--data-parallel-size", "2"], {"dp": 2}),
    (["--max-model-len=8192", "-tp", "2", "--enforce-eager"], {"max_model_len": 8192, "tp": 2}),
    (["--api-server-count", "4", "--kv-cache-dtype", "fp8"], {"api_servers": 4, "kv_cache_dtype": "fp8"}),
    (["--pipeline-parallel-size"], {}),  # no value: vLLM refuses it
    (["--data-parallel-size", "two"], {}),
    (["--max-num-seqs", "8"], {}),
])
def test_plan_inputs_given_after_double_dash(extra, expected):
    """vLLM takes the last of a repeated flag, so these, after r1's own, are what vLLM runs with."""
    assert cmdline.plan_flags_in(extra) == expected


@pytest.mark.parametrize("text, expected", [(None, 1), ("1", 1), ("4", 4), ("all", "all"), (" ALL ", "all")])
def test_parse_gpus(text, expected):
    assert cmdline.parse_gpus(text) == expected


@pytest.mark.parametrize("text, expected", [(None, None), ("auto", None), ("AUTO", None), ("4096", 4096),
                                            ("32,768", 32768), ("32_768", 32768)])
def test_parse_max_model_len(text, expected):
    assert cmdline.parse_max_model_len(text) == expected


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


# --- --quant awq|gptq on a preset: its checkpoint of that format (offline: the table in config.PRESETS) ---

QUANTS = [None, "none", "fp8", "awq", "awq_marlin", "gptq", "gptq_marlin"]
PRESET_NAMES = [name for key, p in config.PRESETS.items() for name in (key, p.repo)]


def _expected(name: str, quant: str | None) -> str | None:
    """The repo r1 serves for `r1 serve NAME --quant QUANT`, None where it must refuse."""
    preset = config.find_preset(name)[1]
    family = config.quant_family(quant)
    if family is None:
        return preset.repo
    ckpt = preset.checkpoint(family)
    return ckpt.repo if ckpt else None


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_preset_and_quant_resolves_to_one_checkpoint(name, quant):
    opts = cmdline.options_for(name, quant=quant)
    expected = _expected(name, quant)
    if expected is None:
        with pytest.raises(UsageError, match=f"r1 knows no {config.quant_family(quant).upper()} checkpoint"):
            cmdline.resolve_quant(opts)
        return
    notice = cmdline.resolve_quant(opts)
    assert opts.model == expected and opts.quant == quant  # fp8 stays online quantization of the bf16 one
    if expected == config.find_preset(name)[1].repo:
        assert notice is None
    else:
        source = config.find_preset(expected)[1].checkpoint(config.quant_family(quant)).source
        assert notice.startswith(f"--quant {quant}: serving {expected} ") and source in notice
        assert "\n" not in notice


def test_every_preset_has_an_awq_checkpoint_and_each_checkpoint_names_its_source():
    for preset in config.PRESETS.values():
        assert "awq" in preset.quantized
        for family, ckpt in preset.quantized.items():
            assert family in config.QUANT_FAMILIES and ckpt.source and "/" in ckpt.repo
            assert config.find_preset(ckpt.repo)[2] == family  # a quantized repo is known as the preset's


def test_a_quantized_checkpoint_given_by_id_is_served_as_it_is():
    opts = cmdline.options_for("casperhansen/deepseek-r1-distill-qwen-7b-awq", quant="awq")
    assert cmdline.resolve_quant(opts) is None and opts.model == "casperhansen/deepseek-r1-distill-qwen-7b-awq"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty cache: what a preset's dry run must cope with."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")  # refuses connections


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("key", list(config.PRESETS))
def test_dry_run_of_each_preset_and_quant_works_offline(key, quant, offline, capsys):
    args = ["serve", key, "--dry-run", "--port", str(free_port())] + (["--quant", quant] if quant else [])
    expected = _expected(key, quant)
    code = run(args)
    out, err = capsys.readouterr()
    if expected is None:
        assert code == 2 and out == ""
        assert err.startswith(f"r1: error: --quant {quant}: r1 knows no GPTQ checkpoint of ")
        return
    assert code == 10, err  # the command is worked out offline and printed; the start's pull would fail (issue 22)
    words = shlex.split(out)
    assert flag(words, "--model") == expected
    if quant in (None, "none"):
        assert "--quantization" not in words
    else:  # plain awq may become awq_marlin on a GPU of compute capability 8.0+
        assert flag(words, "--quantization") in (quant, quant + "_marlin")
    swaps = [line for line in err.splitlines() if " serving " in line]
    assert len(swaps) == (0 if expected == config.PRESETS[key].repo else 1)
    assert (f"r1: error: a start would fail: {expected} is not in the cache and HF_HUB_OFFLINE forbids "
            "downloading it") in err


def test_a_start_resolves_as_the_dry_run_does(offline, capsys):
    """Offline, the start goes as far as the cache check, on the AWQ checkpoint the dry run printed."""
    assert run(["serve", "--quant", "awq", "--port", str(free_port())]) == 10
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("r1: --quant awq: serving casperhansen/deepseek-r1-distill-qwen-1.5b-awq (AWQ by ")
    assert lines[-2] == ("r1: error: casperhansen/deepseek-r1-distill-qwen-1.5b-awq is not in the cache and "
                         "HF_HUB_OFFLINE forbids downloading it")


def test_non_preset_keeps_the_refusal(offline, tmp_path, capsys):
    """A model r1 has no table for: the checkpoint's own config decides, as before."""
    snap = tmp_path / "hub" / "models--someone--plain-model" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    assert run(["serve", "someone/plain-model", "--quant", "gptq", "--dry-run", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("r1: error: --quant gptq: the checkpoint someone/plain-model is not quantized, "
                                   "vLLM would refuse it")


def test_fp8_quantizes_the_bf16_checkpoint_online(offline, capsys):
    assert run(["serve", "1.5b", "--quant", "fp8", "--dry-run", "--port", str(free_port())]) == 10  # offline: would fail
    words = shlex.split(capsys.readouterr().out)
    assert flag(words, "--model") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert flag(words, "--quantization") == "fp8"


# --- --dry-run refuses what a start refuses --------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--gpu-mem", "5"],
    ["--quant", "awq"],  # the demo is not a preset: its bf16 config.json decides
    ["--quant", "gptq"],
    ["--tp", "0"],
    ["--max-model-len", "0"],
])
def test_dry_run_refuses_what_a_start_refuses(args, capsys):
    port = str(free_port())
    started = run(["serve", "demo", "--port", port, *args])
    start_err = capsys.readouterr().err
    dry = run(["serve", "demo", "--port", port, "--dry-run", *args])
    out, dry_err = capsys.readouterr()
    assert dry == started == 2 and out == ""
    assert dry_err == start_err and dry_err.startswith("r1: error: ")


def test_dry_run_refuses_a_port_in_use(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert run(["serve", "demo", "--port", str(port), "--dry-run"]) == 5
    assert capsys.readouterr().err.startswith(f"r1: error: port {port} on 127.0.0.1 is already in use")


# --- flags given beat the demo's defaults ----------------------------------------------------------------


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, {"--gpu-memory-utilization": "0.3", "--max-model-len": "1024", "--dtype": "bfloat16"}),
    (["--gpu-mem", "0.8"], {}, {"--gpu-memory-utilization": "0.8", "--max-model-len": "1024"}),
    (["--max-model-len", "4096"], {}, {"--max-model-len": "4096", "--gpu-memory-utilization": "0.3"}),
    (["--dtype", "auto"], {}, {"--dtype": "auto"}),
    ([], {"R1_GPU_MEM": "0.8", "R1_MAX_MODEL_LEN": "4096"},
     {"--gpu-memory-utilization": "0.8", "--max-model-len": "4096"}),
])
def test_flags_given_beat_the_demo_defaults(args, env, expected, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run(["serve", "demo", "--dry-run", "--port", str(free_port()), *args]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert {name: flag(words, name) for name in expected} == expected


def test_options_for_keeps_given_values_and_fills_the_rest():
    opts = cmdline.options_for("demo", gpu_mem=0.8, max_model_len=None, dtype=None)
    assert (opts.gpu_mem, opts.max_model_len, opts.dtype, opts.cpu) == (0.8, 1024, "bfloat16", True)
    opts = cmdline.options_for("7b", gpu_mem=None, dtype=None)
    # The window is auto until the plan (or, without one, the article's 4096) fills it in.
    assert (opts.model, opts.gpu_mem, opts.max_model_len, opts.dtype) == (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", config.DEFAULT_GPU_MEM, None, "auto")
    assert flag(cmdline.vllm_argv(opts, has_vllm_cli=True), "--max-model-len") == "4096"


def test_demo_preset_fits_a_small_cpu_machine():
    opts = cmdline.demo_options(ServeOptions(model=cmdline.resolve_model("demo")))
    launch = cmdline.build(opts, has_vllm_cli=False, python=PY)
    assert flag(launch.argv, "--gpu-memory-utilization") == "0.3"
    assert flag(launch.argv, "--max-model-len") == "1024"
    assert flag(launch.argv, "--served-model-name") == "r1-demo"
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["HF_HUB_OFFLINE"] == "1"


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    """No Hub and an empty cache (r1 reads both at each call): a dry run of a Hub model knows that the start's
    pull would fail, so it exits 10 (NO_NETWORK), after printing the command all the same."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return "is not in the cache and HF_HUB_OFFLINE forbids downloading it"


def test_dry_run_prints_a_pasteable_redacted_command(capsys, offline_empty_cache):
    port = str(free_port())  # not the default 8000: what runs there is no business of this test
    assert run(["serve", "7b", "--tp", "2", "--api-key", "sekrit", "--port", port, "--dry-run", "--",
                "--enforce-eager"]) == 10
    out, err = capsys.readouterr()
    assert "r1: error: a start would fail: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B " + offline_empty_cache in err, err
    out = out.strip()
    words = shlex.split(out)
    assert "sekrit" not in out and "VLLM_API_KEY=***" in words
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in words
    assert flag(words, "--tensor-parallel-size") == "2"
    assert words[-1] == "--enforce-eager"


def test_env_vars_set_flags(capsys, monkeypatch, offline_empty_cache):
    port = str(free_port())
    monkeypatch.setenv("R1_PORT", port)
    monkeypatch.setenv("R1_MAX_MODEL_LEN", "2048")
    assert run(["serve", "1.5b", "--dry-run"]) == 10
    out, err = capsys.readouterr()
    assert "a start would fail: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B " + offline_empty_cache in err, err
    words = shlex.split(out)
    assert flag(words, "--port") == port and flag(words, "--max-model-len") == "2048"


def test_dry_run_of_a_cached_model_is_0_and_says_nothing_is_downloaded(capsys, monkeypatch, tmp_path):
    """The other side of offline_empty_cache: a whole snapshot in the cache (refs/main names it; config.json, the
    tokenizer and the weights are there: hub.files.missing_to_serve) is all a start needs, so the dry run exits 0,
    offline or not."""
    cache = tmp_path / "hub"
    folder = cache / "models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "qwen2"}')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # config.json alone (what AutoConfig leaves) is no model: offline, the start would fail, and says so.
    assert run(["serve", "1.5b", "--port", str(free_port()), "--dry-run"]) == ExitStatus.NO_NETWORK
    assert "is not in the cache and HF_HUB_OFFLINE forbids downloading it" in capsys.readouterr().err
    (snapshot / "tokenizer.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"weights")
    assert run(["serve", "1.5b", "--port", str(free_port()), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B is in the Hugging Face cache: a start downloads nothing" in err, err
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in shlex.split(out)


@pytest.mark.parametrize("args, message", [
    (["--gpu-mem", "0"], "--gpu-mem must be in (0, 1]"),
    (["--gpu-mem", "1.5"], "--gpu-mem must be in (0, 1]"),
    (["--quant", "bitsandbytes"], "unknown --quant 'bitsandbytes'"),
    (["--tp", "0"], "--tp and --pp must be at least 1"),
    (["--port", "70000"], "Invalid value for '--port' (env var: 'R1_PORT'): 70000 is not in the range 1<=x<=65535."),
    (["--gpus", "0"], "--gpus must be a number of GPUs (at least 1) or all, got '0'"),
    (["--gpus", "many"], "--gpus must be a number of GPUs (at least 1) or all, got 'many'"),
    (["--max-model-len", "long"], "--max-model-len must be a positive number of tokens or auto, got 'long'"),
    (["--max-model-len", "-5"], "--max-model-len must be a positive number of tokens or auto, got '-5'"),
    (["--dp", "0"], "--dp must be at least 1"),
    (["--api-servers", "0"], "--api-servers must be at least 1"),
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
