"""Defaults, presets, R1_* variables and the state directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
DEFAULT_HOST = "127.0.0.1"  # not the article's 0.0.0.0: nobody else should reach an unauthenticated server
DEFAULT_PORT = 8000
DEFAULT_BASE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1"  # where the article's hand-started server listens
DEFAULT_GPU_MEM = 0.8  # the article's --gpu-memory-utilization
DEFAULT_MAX_MODEL_LEN = 4096  # the article's --max-model-len
DEFAULT_REASONING_PARSER = "deepseek_r1"
DEFAULT_TIMEOUT = 900.0  # seconds to readiness: a cold 70B download+load can take long

QUANT_CHOICES = ("awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "none")


@dataclass(frozen=True)
class Preset:
    repo: str
    params_b: float  # billions of parameters: weights in bf16 take 2 bytes each
    awq_repo: str | None = None


PRESETS: dict[str, Preset] = {
    "1.5b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78, "casperhansen/deepseek-r1-distill-qwen-1.5b-awq"),
    "7b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62),
    "8b": Preset("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03),
    "14b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.8),
    "32b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.8),
    "70b": Preset("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 70.6),
}


def demo_model_dir() -> Path:
    return Path(__file__).parent / "demo_model"


def env_str(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def state_dir() -> Path:
    """Where r1 keeps server records, logs and chat history (0700)."""
    override = env_str("R1_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs  # only commands that touch state pay for it

        path = Path(platformdirs.user_state_dir("r1", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
