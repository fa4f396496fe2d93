"""The GPU tier on two GPUs (`pytest -m gpu` on a 2-GPU device; deselected where NVML sees fewer): tensor
parallel over both, two replicas (data parallel) with their engines named and summed, and stop giving
every GPU back."""

from __future__ import annotations

import re

import pytest

import gpu_common as g
from conftest import free_port, run_r1
from r1cli import gpu

pytestmark = [pytest.mark.gpu, pytest.mark.gpu2, pytest.mark.timeout(1800)]
TWO = {"CUDA_VISIBLE_DEVICES": "0,1"}


def _stop_frees_both(port: int) -> None:
    proc = g.stop(port, env=TWO)
    assert proc.returncode == 0, proc.stderr
    freed = re.search(r"; GPU memory freed: GPU 0: ([\d.]+) GiB, GPU 1: ([\d.]+) GiB$", proc.stderr.strip())
    assert freed and min(float(freed.group(1)), float(freed.group(2))) > 40, proc.stderr
    used = g.nvml_used()
    assert used[0] < 1024 and used[1] < 1024, used


def test_tp_2_splits_the_model_over_both_gpus():
    port = free_port()
    try:
        proc = g.serve(port, "--tp", "2", env=TWO)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert re.search(r"^r1: plan: tp 2 on 2 GPUs, context window 32,768, \d+ API servers?$", proc.stderr, re.M)
        assert "r1:   tensor parallel 2 as given" in proc.stderr
        data, server = g.status(port, env=TWO)
        assert server["state"] == "ready"
        for index in (0, 1):
            names = [p["name"] for p in data["gpus"][index]["processes"] if p["server_port"] == port]
            assert any(re.search(rf"Worker_TP{index}\b", name) for name in names), (index, names)
        ask = run_r1("ask", "What is 2+3?", "--json", "--max-tokens", "32", "--base-url",
                     f"http://127.0.0.1:{port}/v1", timeout=300)
        assert ask.returncode in (0, 4), ask.stderr
        _stop_frees_both(port)
    finally:
        g.stop(port, env=TWO)


def test_gpus_2_runs_two_replicas_named_and_summed():
    port = free_port()
    try:
        proc = g.serve(port, "--gpus", "2", env=TWO)
        err = proc.stderr
        assert proc.returncode == 0, err[-4000:]
        assert re.search(r"^r1: plan: 2 replicas on 2 GPUs, context window 32,768, \d+ API servers$", err, re.M)
        for engine in ("0", "1"):  # each engine's stages, named
            assert re.search(rf"\] engine {engine}: weights loaded", err), err[-4000:]
            assert re.search(rf"\] engine {engine}: KV cache: [\d,]+ tokens", err), err[-4000:]
        assert "] warming up: 2, 16, 128, 512 at once + 2 32,752-token prefills" in err
        assert re.search(r"KV cache [\d,]+ tokens over 2 engines", err)
        url = f"http://127.0.0.1:{port}/v1"
        with g.Load(url, requests=64):
            busy = None
            for _ in range(60):  # until both engines report running requests
                data, server = g.status(port, env=TWO)
                engines = server["metrics"]["engines"]
                if len(engines) == 2 and all((e["running"] or 0) > 0 for e in engines):
                    busy = server
                    break
            assert busy is not None, server["metrics"]
            metrics = busy["metrics"]
            assert metrics["running"] == sum(e["running"] for e in metrics["engines"])
            assert metrics["waiting"] == sum(e["waiting"] for e in metrics["engines"])
            plain = run_r1("status", env=TWO).stdout
            assert re.search(r"^    engine 0: \d+ running", plain, re.M) and re.search(r"^    engine 1: \d+ running", plain, re.M)
            for index in (0, 1):
                assert [p for p in data["gpus"][index]["processes"] if p["server_port"] == port], index
            _stop_frees_both(port)  # under load: stop must still give everything back
        assert all(not c.processes for c in gpu.query().gpus[:2])
    finally:
        g.stop(port, env=TWO)
