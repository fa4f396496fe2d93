"""vLLM's /metrics (Prometheus text) as the `metrics` object of `r1 status --json` (r1cli/server/status.py
documents it): what `r1 status` shows and what the keep-alive's sleep waits on (server/sleep.py).

Imports nothing of r1: the parsing is a rule of vLLM's format, beneath everything that reads a server.
prometheus_client is imported only when a page is parsed."""

from __future__ import annotations

METRIC_KEYS = ("running", "waiting", "kv_cache_usage_pct", "prompt_tokens_total", "generation_tokens_total",
               "ttft_mean_s", "sleep_level")


def empty_metrics() -> dict:
    return {**{key: None for key in METRIC_KEYS}, "engines": []}


def parse_metrics(text: str) -> dict:
    """vLLM's Prometheus text -> the `metrics` object. With data parallel every sample carries an `engine`
    label (vllm/v1/metrics/loggers.py: labelnames ["model_name", "engine"], one child per engine): counts
    are added up over the engines, KV cache usage is the fullest engine's, and `engines` lists each
    engine's own figures (one item per engine label; [] when the samples carry none)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    peaks: dict[str, float] = {}
    per_engine: dict[str, dict[str, float]] = {}
    sleep_states: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("vllm:") or sample.name.endswith(("_bucket", "_created")):
                continue
            if sample.name == "vllm:engine_sleep_state":
                key = sample.labels.get("sleep_state", "")
                sleep_states[key] = max(sleep_states.get(key, 0.0), sample.value)
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            peaks[sample.name] = max(peaks.get(sample.name, sample.value), sample.value)
            engine = sample.labels.get("engine")
            if engine is not None:
                mine = per_engine.setdefault(engine, {})
                mine[sample.name] = mine.get(sample.name, 0.0) + sample.value
    out = _metric_figures(totals, peaks)
    out["sleep_level"] = _sleep_level(sleep_states)
    out["engines"] = [{"engine": engine, **_engine_figures(per_engine[engine])}
                      for engine in sorted(per_engine, key=lambda e: (len(e), e))]
    return out


def _sleep_level(states: dict[str, float]) -> int | None:
    """vLLM's `vllm:engine_sleep_state` gauge, by its sleep_state label (awake / weights_offloaded /
    discard_all; the highest value over the engines): 1 or 2 while the engine sleeps, None when awake or
    without the gauge."""
    if states.get("awake", 1.0) >= 1.0:
        return None
    return 1 if states.get("weights_offloaded") else 2 if states.get("discard_all") else None


_KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # the latter: vLLM < 0.10


def _metric_figures(totals: dict[str, float], peaks: dict[str, float]) -> dict:
    def count(name: str) -> int | None:
        value = totals.get(name)
        return int(value) if value is not None else None

    kv = peaks.get(_KV_NAMES[0], peaks.get(_KV_NAMES[1]))
    ttft_sum = totals.get("vllm:time_to_first_token_seconds_sum")
    ttft_count = totals.get("vllm:time_to_first_token_seconds_count")
    return {
        "running": count("vllm:num_requests_running"),
        "waiting": count("vllm:num_requests_waiting"),
        "kv_cache_usage_pct": round(kv * 100.0, 1) if kv is not None else None,  # vLLM reports 0..1
        "prompt_tokens_total": count("vllm:prompt_tokens_total"),
        "generation_tokens_total": count("vllm:generation_tokens_total"),
        "ttft_mean_s": round(ttft_sum / ttft_count, 4) if ttft_sum is not None and ttft_count else None,
    }


def _engine_figures(values: dict[str, float]) -> dict:
    """One engine's running, waiting and KV cache use (its samples alone: the peak is its own value)."""
    figures = _metric_figures(values, values)
    return {key: figures[key] for key in ("running", "waiting", "kv_cache_usage_pct", "generation_tokens_total")}
