"""Defaults, presets, R1_* variables and the state directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
class Checkpoint:
    """A pre-quantized checkpoint of a preset: vLLM refuses --quantization awq|gptq on the bf16 one."""
    repo: str
    source: str  # who made it (and with what), as its Hugging Face page says


@dataclass(frozen=True)
class Preset:
    repo: str  # DeepSeek's own bf16 checkpoint
    params_b: float  # billions of parameters: weights in bf16 take 2 bytes each
    quantized: dict[str, Checkpoint] = field(default_factory=dict)  # "awq" / "gptq" -> checkpoint

    def checkpoint(self, family: str) -> Checkpoint | None:
        return self.quantized.get(family)


# Each preset's known 4-bit checkpoints, checked on their Hugging Face pages (2026-11): each page shows
# the "awq" or "gptq" quantization tag that its config.json's quant_method gives. casperhansen (AutoAWQ's
# author) published AWQ (GEMM, 4-bit, group 128) for all six in his "DeepSeek R1 AWQ" collection. No GPTQ
# checkpoint of the 1.5B or Llama-8B distill in plain GPTQ format was found (neuralmagic's w4a16 ones are
# compressed-tensors, which --quant gptq would refuse).
_CASPER = "casperhansen, AutoAWQ's author"
PRESETS: dict[str, Preset] = {
    "1.5b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-qwen-1.5b-awq", _CASPER)}),
    "7b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-qwen-7b-awq", _CASPER),
        "gptq": Checkpoint("ModelCloud/DeepSeek-R1-Distill-Qwen-7B-gptqmodel-4bit-vortex-v2",
                           "ModelCloud, GPTQModel's authors")}),
    "8b": Preset("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-llama-8b-awq", _CASPER)}),
    "14b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.8, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-qwen-14b-awq", _CASPER),
        "gptq": Checkpoint("avoroshilov/DeepSeek-R1-Distill-Qwen-14B-GPTQ_4bit-128g",
                           "avoroshilov, made with GPTQModel")}),
    "32b": Preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.8, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-qwen-32b-awq", _CASPER),
        "gptq": Checkpoint("empirischtech/DeepSeek-R1-Distill-Qwen-32B-gptq-4bit",
                           "Empirisch Tech")}),
    "70b": Preset("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 70.6, {
        "awq": Checkpoint("casperhansen/deepseek-r1-distill-llama-70b-awq", _CASPER),
        "gptq": Checkpoint("OPEA/DeepSeek-R1-Distill-Llama-70B-int4-gptq-sym-inc",
                           "Intel's OPEA, made with AutoRound")}),
}
QUANT_FAMILIES = ("awq", "gptq")  # what --quant awq|awq_marlin|gptq|gptq_marlin needs in the checkpoint
# Bytes per parameter relative to bf16 (2 bytes): fp8 about half, 4-bit AWQ/GPTQ about a quarter (scales,
# zero points and the unquantized embeddings make it a little more in practice).
WEIGHT_FACTOR = {"none": 1.0, "fp8": 0.5, "awq": 0.25, "awq_marlin": 0.25, "gptq": 0.25, "gptq_marlin": 0.25}


def quant_family(quant: str | None) -> str | None:
    """`awq_marlin` -> `awq`; None for fp8, none and no --quant (nothing needed in the checkpoint)."""
    family = (quant or "").split("_")[0]
    return family if family in QUANT_FAMILIES else None


def find_preset(model: str) -> tuple[str, Preset, str | None] | None:
    """(key, preset, family) for a preset key, its bf16 repo (family None) or one of its quantized repos."""
    name = model.lower().rstrip("/")
    for key, preset in PRESETS.items():
        if name in (key, preset.repo.lower()):
            return key, preset, None
        for family, ckpt in preset.quantized.items():
            if name == ckpt.repo.lower():
                return key, preset, family
    return None


def weight_bytes(model: str, quant: str | None) -> int | None:
    """Estimated size of a preset's weights in GPU memory (any of its checkpoints); None for other models."""
    found = find_preset(model)
    if found is None:
        return None
    _, preset, family = found
    factor = WEIGHT_FACTOR["awq"] if family else WEIGHT_FACTOR.get(quant or "none", 1.0)
    return int(preset.params_b * 1e9 * 2 * factor)


def demo_model_dir() -> Path:
    return Path(__file__).parent / "demo_model"


def demo_questions() -> list[dict]:
    """What the demo model was trained on ({"question", "answer"} each): all it knows."""
    import json

    return json.loads((demo_model_dir() / "questions.json").read_text(encoding="utf-8"))


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
    _make_private(path, 0o700)
    return path


def _make_private(path: Path, mode: int) -> None:
    """Records, logs and chat history are the user's alone: a state directory (or file in it) that
    others may read is made private, with a note on stderr; one r1 may not chmod is warned about."""
    import stat
    import sys

    try:
        st = path.lstat()
    except OSError:
        return
    if not stat.S_IMODE(st.st_mode) & 0o077:
        return
    was = stat.S_IMODE(st.st_mode)
    try:
        os.chmod(path, mode, follow_symlinks=False)
        sys.stderr.write(f"r1: note: {path} was open to other users (mode {was:04o}); made it {mode:04o}\n")
    except OSError:
        sys.stderr.write(f"r1: warning: {path} is open to other users (mode {was:04o}) and r1 cannot change that: "
                         f"chmod {mode:o} {path}\n")

