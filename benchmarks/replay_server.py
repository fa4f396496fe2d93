"""A local OpenAI-compatible server that replays one long R1 answer as fast as it can.

The answer is N tokens (default 8000): a think block streamed as ``delta.reasoning`` and then the
answer as ``delta.content``, one SSE event per token in its own HTTP chunk, as vLLM does with
``--reasoning-parser deepseek_r1``. Every event is encoded before the server listens, so the server
costs one ``sendall`` per token. Some tokens carry markers (``@@A1000@@`` is answer token 1000) so a
reader can time the first and last thousand tokens.

    python benchmarks/replay_server.py --port 8099 [--tokens 8000] [--think 1500] [--rate 0]

Stdlib only; prints "ready URL" on stdout once it listens. ``--rate`` paces it (tokens/s; 0 = as fast
as it can).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops connections when 64 clients connect at once
    daemon_threads = True

WORDS = ("the", "sum", "of", "squares", "is", "then", "we", "get", "x", "=", "2", "so", "each", "term",
         "and", "**bold**", "`code`", "value")


def marker(i: int) -> str:
    return f"@@A{i}@@"


def answer_markers(n_answer: int) -> list[int]:
    """Answer-token indices that carry a marker: the ends of the first and last thousand, and the last."""
    k = min(1000, n_answer // 2)
    return sorted({0, k, n_answer - k, n_answer - 1})


def tokens(n: int, think: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i in range(think):
        word = WORDS[i % len(WORDS)]
        out.append(("reasoning", word + ("\n" if i % 20 == 19 else " ")))
    n_answer = n - think
    marks = set(answer_markers(n_answer))
    for i in range(n_answer):
        word = marker(i) if i in marks else WORDS[(i * 7) % len(WORDS)]
        sep = "\n\n" if i % 60 == 59 else ("\n" if i % 15 == 14 else " ")
        out.append(("answer", word + sep))
    return out


def sse_events(n: int, think: int, model: str = "replay") -> list[bytes]:
    created = int(time.time())
    base = {"id": "chatcmpl-replay", "object": "chat.completion.chunk", "created": created, "model": model}
    events = []

    def chunk(data: dict) -> bytes:
        payload = b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"
        return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"  # one HTTP chunk per event

    events.append(chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "logprobs": None, "finish_reason": None}]}))
    for channel, text in tokens(n, think):
        key = "reasoning" if channel == "reasoning" else "content"
        events.append(chunk({**base, "choices": [{"index": 0, "delta": {key: text}, "logprobs": None,
                                                  "finish_reason": None}]}))
    events.append(chunk({**base, "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None,
                                              "finish_reason": "stop", "stop_reason": None}]}))
    events.append(chunk({**base, "choices": [], "usage": {
        "prompt_tokens": 20, "total_tokens": 20 + n, "completion_tokens": n,
        "completion_tokens_details": {"reasoning_tokens": think}}}))
    done = b"data: [DONE]\n\n"
    events.append(f"{len(done):x}\r\n".encode() + done + b"\r\n")
    events.append(b"0\r\n\r\n")
    return events


def make_handler(events: list[bytes], rate: float, model: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, status: int, data: dict) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "max_model_len": 32768}]})
            elif self.path == "/health":
                self._json(200, {})
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"detail": "Not Found"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            sock = self.connection
            t0 = time.monotonic()
            try:
                for i, event in enumerate(events):
                    if rate:
                        delay = t0 + i / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    sock.sendall(event)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--think", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=0.0, help="tokens/s; 0: as fast as it can")
    ap.add_argument("--model", default="replay")
    args = ap.parse_args(argv)
    events = sse_events(args.tokens, args.think, args.model)
    server = Server(("127.0.0.1", args.port), make_handler(events, args.rate, args.model))
    server.daemon_threads = True
    print(f"ready http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
