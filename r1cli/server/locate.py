"""Which server a client command talks to: --port's or --base-url's, else the running r1 server's, else
the default; and whether that server is one the user's own r1 records name.

It reads the server records, so it lives on the server side: the client package below never looks up."""

from __future__ import annotations

from urllib.parse import urlsplit

from r1cli import config
from r1cli.client.target import Target, normalize_base_url
from r1cli.errors import NoServerError

NOT_OURS = "not started by r1"  # the label status and the client commands give a server no record names
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def local_url(port: int) -> str:
    """--port P: the server at 127.0.0.1:P."""
    return f"http://{config.DEFAULT_HOST}:{port}/v1"


def resolve_target(base_url: str | None, api_key: str | None, model: str | None, port: int | None = None) -> Target:
    """--port (127.0.0.1:PORT) or --base-url / R1_BASE_URL, else the running r1 server, else the
    article's http://127.0.0.1:8000/v1."""
    return resolve(base_url, api_key, model, port)[0]


def resolve(base_url: str | None, api_key: str | None, model: str | None,
            port: int | None = None) -> tuple[Target, "state.ServerRecord | None"]:
    """The target, and the live record of this R1_HOME that names it (the user's own r1 server), or None."""
    from r1cli.server import state  # the records

    if port is not None:  # more specific than --base-url (or R1_BASE_URL): it wins
        base_url = local_url(port)
    if base_url:
        url = normalize_base_url(base_url)
        record = _record_of(url, state)
        return Target(url, api_key, model or (record.served_name if record else None)), record
    records, _ = state.load_all()
    live = [r for r in records if state.is_alive(r)]
    if live:
        record = next((r for r in live if r.port == config.DEFAULT_PORT), live[0])
        return Target(record.url, api_key, model or record.served_name), record
    if records:  # r1 started a server that is gone: name it, not the article's default port
        from r1cli import machine

        record = next((r for r in records if r.port == config.DEFAULT_PORT), records[0])
        raise NoServerError(f"the r1 server at {record.url} is no longer running (it died)",
                            hint=f"`r1 logs --port {record.port}` shows why; "
                                 + machine.serve_fix(record.port, record.model, again=True))
    return Target(config.DEFAULT_BASE_URL, api_key, model), None


def _record_of(url: str, state):
    """The live record of this R1_HOME whose server answers at url (a local host and its port, or its host)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    records, _ = state.load_all()
    for record in records:
        if record.port == port and (parts.hostname in LOCAL_HOSTS or parts.hostname == record.host):
            return record if state.is_alive(record) else None
    return None


def target_for(env, base_url: str | None, api_key: str | None, model: str | None, port: int | None = None) -> Target:
    """resolve_target for a client command: one line on stderr when the server is not the user's own
    recorded one (another user's on the default port, or any --base-url/--port no record names)."""
    target, record = resolve(base_url, api_key, model, port)
    if record is None:
        env.note(f"r1: using {target.base_url}, a server {NOT_OURS} (no record of it in {config.state_dir()})")
    return target
