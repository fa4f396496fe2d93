"""`r1 route`'s rules without a router: how a worker is named, which workers it refuses, the router's command
(no key in it), and what it says without the route extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from scripted_server import ScriptedServer

from r1cli.errors import StartFailedError, UsageError
from r1cli.server import route

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("given, root", [
    ("10.0.0.2:8000", "http://10.0.0.2:8000"),
    ("http://10.0.0.2:8000/v1", "http://10.0.0.2:8000"),
    ("http://gpu-box:8001/", "http://gpu-box:8001"),
    (":8001", "http://127.0.0.1:8001"),
    ("https://r1.example.org:443", "https://r1.example.org:443"),
    ("[::1]:8000", "http://[::1]:8000"),
])
def test_a_worker_is_named_by_url_or_host_and_port(given, root):
    assert route.worker_root(given) == root


@pytest.mark.parametrize("given", ["10.0.0.2", "ftp://10.0.0.2:21", "http://10.0.0.2:8000/v2", "10.0.0.2:http",
                                   "http://:8000", "http://10.0.0.2:8000/v1?x=1"])
def test_a_worker_without_a_port_or_with_another_path_is_refused_with_the_fix(given):
    with pytest.raises(UsageError) as caught:
        route.worker_root(given)
    assert "HOST:PORT" in caught.value.hint


def test_workers_of_two_models_are_refused_naming_both():
    workers = [route.Worker("http://a:8000", 200, ["r1-demo"]), route.Worker("http://b:8000", 200, ["r1-7b"])]
    with pytest.raises(UsageError) as caught:
        route.refuse(workers, None)
    assert "http://b:8000 serves r1-7b, http://a:8000 serves r1-demo" in caught.value.message
    assert route.refuse(workers[:1], None) == "r1-demo"
    # `route add`: measured against the router's model
    with pytest.raises(UsageError, match="the router serves r1-7b"):
        route.refuse(workers[:1], None, served="r1-7b")


def test_a_worker_that_wants_a_key_names_where_the_key_comes_from():
    locked = [route.Worker("http://a:8000", 200, needs_key=True, problem="needs an API key")]
    with pytest.raises(UsageError) as caught:
        route.refuse(locked, None)
    assert "R1_API_KEY or --api-key-file" in caught.value.hint
    down = [route.Worker("http://a:8000", problem="connection refused")]
    with pytest.raises(StartFailedError, match="1 of 1 workers cannot be used") as caught:
        route.refuse(down, None)
    assert caught.value.details == ["http://a:8000: connection refused"] and "--host 0.0.0.0" in caught.value.hint


def test_the_routers_command_carries_no_key_and_its_own_metrics_port():
    argv = route.router_argv(["http://a:8000", "http://b:8000"], host="127.0.0.1", port=8080, policy="round_robin",
                             metrics_port=41234)
    assert argv[:3] == [sys.executable, "-m", "vllm_router.launch_router"]
    assert argv[argv.index("--worker-urls") + 1: argv.index("--worker-urls") + 3] == ["http://a:8000", "http://b:8000"]
    assert "--api-key" not in argv and argv[argv.index("--prometheus-port") + 1] == "41234"
    assert route.DEFAULT_POLICY == "cache_aware" and route.DEFAULT_POLICY in route.POLICIES


def test_the_routers_own_parser_takes_the_whole_command_and_its_health_checks_outlast_a_wake():
    """Every flag r1 gives vllm-router is one its parser knows (a renamed flag fails here, not at a start), and
    its health check waits past a sleeping worker's wake (1.23 s at level 2 for the 1.5B on an H200,
    ../shared/gpu; /health answers 200 while asleep): a worker is unhealthy only after 3 timeouts in a row."""
    from vllm_router.launch_router import parse_router_args

    argv = route.router_argv([":8000"], host="0.0.0.0", port=8080, policy="cache_aware", metrics_port=41234)
    parsed = parse_router_args(argv[3:])
    assert (parsed.host, parsed.port, parsed.worker_urls, parsed.policy) == ("0.0.0.0", 8080, [":8000"], "cache_aware")
    assert parsed.health_check_timeout_secs == route.HEALTH_TIMEOUT_S >= 10 * 1.23
    assert parsed.health_failure_threshold == 3 and parsed.prometheus_port == 41234


def test_the_policies_offered_are_the_routers_own():
    """A policy r1 offers that vllm-router dropped would fail only when the router starts: its parser knows."""
    from vllm_router.launch_router import parse_router_args

    for policy in route.POLICIES:
        assert parse_router_args(["--policy", policy]).policy == policy


def test_a_scripted_worker_is_checked_for_its_model():
    """A server of another model, scripted: a second real model would be one more vLLM start."""
    other = ScriptedServer("instant")
    try:
        found = route.check_worker(other.base_url[: -len("/v1")], None)
        assert (found.health, found.models, found.problem) == (200, ["scripted"], None)
    finally:
        other.close()


def test_without_the_route_extra_r1_route_says_how_to_install_it():
    # vllm_router made unimportable the way Python itself marks a blocked import (None in sys.modules)
    code = "import sys; sys.modules['vllm_router'] = None; from r1cli.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "route", "10.0.0.2:8000"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["r1: error: r1 route needs vllm-router, which is not installed",
                                        "  fix: install the router: pip install 'r1cli[route]' (vllm-router, vLLM's load balancer)"]
    assert proc.stdout == ""
