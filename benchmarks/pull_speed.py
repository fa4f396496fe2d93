"""`r1 pull` against `hf download` (huggingface_hub's own CLI) of the same files, from olah on localhost.

    python benchmarks/pull_speed.py [--one-mb 1000] [--shards 8] [--shard-mb 128] [--runs 5]

Two repos, served by olah's local mirror (tests/hub/conftest.py starts it; R1_OLAH_PYTHON names olah's python):
one weights file of --one-mb MB, and --shards shards of --shard-mb MB with their index; each beside the demo
model's config and tokenizer. Random bytes: the pull neither knows nor cares. Each run is a fresh process
into a fresh, empty HF_HUB_CACHE (deleted after); r1 and hf take turns (r1 first on even runs, hf first on odd
ones) so that drift on a shared machine falls on both alike. `hf download REPO FILES...` fetches exactly the
files `r1 pull --dry-run --json` lists. Per run: wall seconds, CPU seconds (user + system of the process and
its children) and peak resident memory (the process's own, from wait4). Prints the medians and r1/hf ratios;
the goal is r1's wall time at most 1.0x hf's on both repos.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from hub.conftest import DEMO, free_port, olah_python, start_olah, stop, wait_http  # noqa: E402

HF = str(Path(sys.executable).with_name("hf"))
SMALL = ["config.json", "generation_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]


def make_repo(folder: Path, weights: dict[str, int]) -> None:
    """A git repo of the demo's small files and WEIGHTS (name: bytes) of random bytes, with an index if sharded."""
    folder.mkdir(parents=True)
    for name in SMALL:
        shutil.copy(DEMO / name, folder / name)
    for name, size in weights.items():
        with open(folder / name, "wb") as fh:
            for _ in range(size // 8_000_000):
                fh.write(os.urandom(8_000_000))
            fh.write(os.urandom(size % 8_000_000))
    if len(weights) > 1:
        index = {"metadata": {"total_size": sum(weights.values())},
                 "weight_map": {f"layer.{i}": name for i, name in enumerate(weights)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(folder)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(folder)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """ARGV run to its end: (wall s, CPU s of it and its children, its peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-mb", type=int, default=1000, help="the single weights file's size")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard-mb", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="r1-pull-speed-"))
    cases = {
        "r1bench/one": {"model.safetensors": args.one_mb * 1_000_000},
        "r1bench/shards": {f"model-{i:05d}-of-{args.shards:05d}.safetensors": args.shard_mb * 1_000_000
                           for i in range(1, args.shards + 1)},
    }
    for repo, weights in cases.items():
        make_repo(base / "mirrors" / "models" / repo, weights)
    port = free_port()
    olah = start_olah(olah_python(), base / "mirror", port, f'mirrors-path = ["{base / "mirrors"}"]\n[accessibility]\noffline = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_COLOR="1")
    try:
        wait_http(f"http://127.0.0.1:{port}/api/models/r1bench/one/revision/main", olah)
        results: dict[str, dict[str, list]] = {}
        for repo in cases:
            probe = subprocess.run([sys.executable, "-m", "r1cli", "pull", repo, "--dry-run", "--json"],
                                   env={**env, "HF_HUB_CACHE": str(base / "probe")}, capture_output=True, text=True,
                                   check=True, cwd=ROOT)
            names = [f["name"] for f in json.loads(probe.stdout)["files"]]
            total = json.loads(probe.stdout)["total"]
            commands = {"r1": [sys.executable, "-m", "r1cli", "pull", repo], "hf": [HF, "download", repo, *names]}
            # A first pull of each, not counted: olah reads the repo into the page cache.
            for tool, argv in commands.items():
                cache = base / f"warm-{tool}"
                timed(argv, {**env, "HF_HUB_CACHE": str(cache)})
                shutil.rmtree(cache)
            results[repo] = {"r1": [], "hf": []}
            for run in range(args.runs):
                for tool in (("r1", "hf") if run % 2 == 0 else ("hf", "r1")):
                    cache = base / f"cache-{tool}-{run}"
                    measured = timed(commands[tool], {**env, "HF_HUB_CACHE": str(cache)})
                    results[repo][tool].append(measured)
                    shutil.rmtree(cache)
                    print(f"{repo} run {run + 1} {tool}: {measured[0]:.1f} s wall, {measured[1]:.1f} s CPU, "
                          f"{measured[2]:.0f} MB peak", flush=True)
            report(repo, total, len(names), results[repo])
    finally:
        stop(olah)
        shutil.rmtree(base, ignore_errors=True)


def report(repo: str, total: int, files: int, runs: dict[str, list]) -> None:
    med = {tool: [statistics.median(m[i] for m in runs[tool]) for i in range(3)] for tool in runs}
    print(f"\n{repo}: {files} files, {total / 1e6:.0f} MB, {len(runs['r1'])} runs each (medians)")
    for tool in ("r1", "hf"):
        wall, cpu, rss = med[tool]
        print(f"  {tool}: {wall:6.1f} s wall ({total / wall / 1e6:5.1f} MB/s), {cpu:5.1f} s CPU, {rss:4.0f} MB peak "
              f"(walls: {', '.join(f'{m[0]:.1f}' for m in runs[tool])})")
    print(f"  r1/hf: wall {med['r1'][0] / med['hf'][0]:.2f}x, CPU {med['r1'][1] / med['hf'][1]:.2f}x, "
          f"peak memory {med['r1'][2] / med['hf'][2]:.2f}x (goal: wall <= 1.00x)", flush=True)


if __name__ == "__main__":
    main()
