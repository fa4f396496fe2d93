"""Where a client sends its requests: an OpenAI base URL, its key and the model name."""

from __future__ import annotations

from dataclasses import dataclass

from r1cli.client import http as r1http
from r1cli.errors import UsageError


@dataclass
class Target:
    base_url: str  # ends in /v1
    api_key: str | None = None
    model: str | None = None
    # Whether the server takes vLLM's per-request thinking_token_budget: None until a turn finds out.
    server_budget: bool | None = None

    @property
    def root(self) -> str:
        """The server's root, where vLLM's /health, /tokenize and /metrics live."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    @property
    def headers(self) -> dict[str, str]:
        return r1http.auth_headers(self.api_key)


def normalize_base_url(base_url: str) -> str:
    """`localhost:8000`, `http://host:8000/`, `http://host:8000/v1` all mean the same /v1 root; a URL
    with no host or a bad port is a usage error, not a connection failure."""
    from urllib.parse import urlsplit

    url = base_url.strip()
    if "://" not in url:
        url = "http://" + url  # `localhost:8000` is what a hurried user types
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url must start with http:// or https://, got {base_url!r}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--base-url {base_url!r} has a port that is not a number from 1 to 65535",
                         hint="e.g. --base-url http://127.0.0.1:8000/v1") from None
    if not parts.hostname or port == 0:
        raise UsageError(f"--base-url {base_url!r} names no host", hint="e.g. --base-url http://127.0.0.1:8000/v1")
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return url
