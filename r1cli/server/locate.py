"""Which server a client command talks to: the flag's, else the running r1 server's, else the default.

It reads the server records, so it lives on the server side: the client package below never looks up."""

from __future__ import annotations

from r1cli import config
from r1cli.client.target import Target, normalize_base_url
from r1cli.errors import NoServerError


def resolve_target(base_url: str | None, api_key: str | None, model: str | None) -> Target:
    """--base-url / R1_BASE_URL, else the running r1 server, else the article's http://127.0.0.1:8000/v1."""
    if base_url:
        return Target(normalize_base_url(base_url), api_key, model)
    from r1cli.server import state  # the records: only when no --base-url names the server

    records, _ = state.load_all()
    live = [r for r in records if state.is_alive(r)]
    if live:
        record = next((r for r in live if r.port == config.DEFAULT_PORT), live[0])
        return Target(record.url, api_key, model or record.served_name)
    if records:  # r1 started a server that is gone: name it, not the article's default port
        record = next((r for r in records if r.port == config.DEFAULT_PORT), records[0])
        raise NoServerError(f"the r1 server at {record.url} is no longer running (it died)",
                            hint=f"`r1 logs --port {record.port}` shows why; start it again with `r1 serve`")
    return Target(config.DEFAULT_BASE_URL, api_key, model)
