"""Telling the Hub's answers apart without importing huggingface_hub: a transport error by its class's name,
an HTTP status from the exception's response, an exception's first line."""

from __future__ import annotations


def is_network_error(exc: BaseException) -> bool:
    # huggingface_hub raises its HTTP client's own transport errors (httpx's or httpx2's): tell them by name.
    names = {cls.__name__ for cls in type(exc).__mro__}
    transport = {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "TransportError",
                 "RemoteProtocolError", "ProxyError", "ReadError", "ReadTimeout"}
    return bool(names & transport) or isinstance(exc, (ConnectionError, TimeoutError))


def status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
