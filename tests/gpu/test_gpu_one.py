"""The GPU tier on one GPU (`pytest -m gpu` on the device; see tests/conftest.py): NVML against nvidia-smi,
`r1 doctor`, the preflight's GPU cases, and a real serve / burst / status / ask / stop of the 1.5B's shape.

Each test asserts; nothing here prints for a person to read. One GPU even on a bigger machine:
CUDA_VISIBLE_DEVICES=0 for r1 and vLLM alike."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

import gpu_common as g
from conftest import free_port, run_r1
from r1cli import gpu

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1800)]
ONE = {"CUDA_VISIBLE_DEVICES": "0"}


def test_nvml_agrees_with_nvidia_smi_within_1_percent():
    with g.hog(20):  # memory in use, so that "used" is a real figure and not ~0
        smi = g.smi()
        report = gpu.query()
    assert report.available, report.error
    assert sorted(smi) == [c.index for c in report.gpus]
    for card in report.gpus:
        used, total = smi[card.index]
        assert abs(card.memory_total_mib - total) <= 0.01 * total, (card.index, card.memory_total_mib, total)
        assert abs(card.memory_used_mib - used) <= 0.01 * total, (card.index, card.memory_used_mib, used)
    assert smi[0][0] >= 20 * 1024  # the 20 GiB held show in both


def test_doctor_passes_on_the_gpu():
    g.require_model()
    proc = run_r1("doctor", g.MODEL, "--json", "--port", str(free_port()), env=ONE, timeout=120)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert proc.returncode == 0, proc.stdout
    for name in ("nvml", "vllm", "torch", "gpu memory", "model"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "sees 1 GPU(s)" in checks["torch"]["detail"]
    capability = [c for c in checks.values() if c["name"].endswith(" capability")]
    assert capability and all(c["status"] == "ok" for c in capability)


def test_plain_awq_becomes_awq_marlin_on_compute_capability_8_or_more(tmp_path):
    """An AWQ checkpoint's config.json (the dry run reads no weights) on this GPU's real compute capability."""
    g.require_model()
    cfg = json.loads((Path(g.MODEL) / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
                                  "version": "gemm"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    cc = min(c.compute_capability for c in gpu.query().gpus)
    assert cc >= (8, 0)  # H100 / H200: 9.0
    proc = run_r1("serve", str(tmp_path), "--quant", "awq", "--dry-run", "--port", str(free_port()), env=ONE)
    assert proc.returncode == 0, proc.stderr
    assert (f"r1: --quant awq: picked awq_marlin (this GPU has compute capability {cc[0]}.{cc[1]}; it takes bf16)"
            in proc.stderr.splitlines())
    words = shlex.split(proc.stdout)
    assert words[words.index("--quantization") + 1] == "awq_marlin"


def test_gpu_mem_above_free_memory_is_refused_before_spawning():
    g.require_model()
    total = gpu.query().gpus[0].memory_total_mib / 1024
    with g.hog(total * 0.5):
        proc = run_r1("serve", g.MODEL, "--gpu-mem", "0.9", "--dry-run", "--port", str(free_port()), env=ONE)
    assert proc.returncode == 5, proc.stderr
    first = next(line for line in proc.stderr.splitlines() if line.startswith("r1: error:"))  # after the plan
    assert re.match(r"r1: error: --gpu-mem 0\.9 reserves [\d.]+ GiB on GPU 0, but only [\d.]+ of its [\d.]+ GiB are free$",
                    first), first
    fits = float(re.search(r"use --gpu-mem ([\d.]+) or lower", proc.stderr).group(1))
    assert 0.3 <= fits <= 0.5


# --- one real server, from start to stop ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served():
    with g.served(env=ONE) as server:
        yield server


def test_serve_plans_one_gpu_with_r1s_full_window_and_warms_up(served):
    port, proc = served
    err = proc.stderr
    assert proc.stdout.strip() == f"http://127.0.0.1:{port}/v1"
    plan_line = [line for line in err.splitlines() if line.startswith("r1: plan: ")][0]
    assert re.fullmatch(r"r1: plan: 1 GPU, context window 32,768, \d+ API servers?", plan_line), plan_line
    assert "r1:   the weights (3.3 GiB) fit one GPU" in err or "r1:   the weights (3.4 GiB) fit one GPU" in err
    assert "weights loaded" in err and "KV cache: " in err  # stages read from vLLM's log
    assert "] warming up: 1, 8, 64, 256 at once + a 32,752-token prefill" in err
    done = re.search(r"\] warmed up in ([\d.]+) s \((\d+) requests\)$", err, re.M)
    assert done and int(done.group(2)) == 330 and "failed" not in done.group(0)
    summary = [line for line in err.splitlines() if line.startswith("r1: ready in ")][0]
    assert "max model len 32,768" in summary and f"(warm-up {float(done.group(1)):.1f} s)" in summary


def test_first_burst_after_ready_is_warm(served):
    """The issue's goal, measured with `r1 bench`: the first c=64 burst after ready within 1.2x of a repeated
    burst's throughput, and its p99 time to first token within 2x. Runs before the other requests.

    Each burst is 256 requests (four waves of 64), against the mean of two repeats: on an H100 single waves of
    64 repeated at 13,013 to 14,535 tok/s, and one first wave read 1.27x its one repeat where the next
    server's read 0.96x, so a single wave tests its own noise rather than the warm-up. Without a warm-up the
    first 256 read 2.6x (bare vLLM: 4,889 against 12,639 tok/s), which this still catches."""
    port, _ = served
    url = f"http://127.0.0.1:{port}/v1"

    def burst() -> dict:
        proc = run_r1("bench", "--base-url", url, "-c", "64", "--requests", "256", "--runs", "1", "--warmup", "0",
                      "--input-len", "128", "--output-len", "256", "--json", timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)["levels"][0]["summary"]
        return {key: summary[key]["mean"] for key in ("output_throughput", "p99_ttft_ms", "mean_itl_ms")}

    first, again = burst(), [burst(), burst()]
    repeated = {key: sum(b[key] for b in again) / len(again) for key in first}
    assert first["output_throughput"] >= repeated["output_throughput"] / 1.2, (first, again)
    assert first["p99_ttft_ms"] <= 2 * repeated["p99_ttft_ms"], (first, again)


def test_status_marks_the_engine_with_the_port(served):
    port, _ = served
    data, server = g.status(port, env=ONE)
    assert server["state"] == "ready" and server["backend"] == "gpu"
    assert server["models"][0]["max_model_len"] == 32_768
    procs = [p for p in data["gpus"][0]["processes"] if p["server_port"] == port]
    assert any("EngineCore" in p["name"] for p in procs), data["gpus"][0]["processes"]
    assert sum(p["used_mib"] for p in procs) > 0.5 * 0.8 * data["gpus"][0]["memory_total_mib"]  # its 0.8 of the GPU
    assert [e["engine"] for e in server["metrics"]["engines"]] == ["0"]


def test_ask_streams_tokens_with_timings(served):
    port, _ = served
    proc = run_r1("ask", "What is 2+3?", "--json", "--max-tokens", "64", "--base-url", f"http://127.0.0.1:{port}/v1",
                  timeout=300)
    assert proc.returncode in (0, 4), proc.stderr  # random weights: there may be no boxed answer (4)
    answer = json.loads(proc.stdout)
    assert answer["usage"]["completion_tokens"] > 0
    assert 0 < answer["timing"]["ttft_s"] < 10 and answer["timing"]["tokens_per_s"] > 0


def test_stop_gives_the_gpu_memory_back_and_says_so(served):
    port, _ = served
    proc = g.stop(port, env=ONE)
    assert proc.returncode == 0, proc.stderr
    freed = re.search(r"; GPU memory freed: GPU 0: ([\d.]+) GiB$", proc.stderr.strip())
    assert freed and float(freed.group(1)) > 40, proc.stderr
    assert g.nvml_used()[0] < 1024  # MiB: back to the idle figure
    assert gpu.query().gpus[0].processes == []
