"""The models r1 can serve from the Hugging Face cache, and removing one, through huggingface_hub's own scan
(scan_cache_dir) and deletion strategy (delete_revisions), never by walking its folders by hand.

huggingface_hub is imported by the functions that use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from r1cli import config, machine
from r1cli.errors import ExitStatus, HubError
from r1cli.hub import files
from r1cli.hub.pull import human


@dataclass(frozen=True)
class CachedModel:
    repo: str
    commit: str
    refs: tuple[str, ...]  # branches and tags pointing at the commit (main, ...)
    size: int  # bytes on disk (blobs shared with another revision count in both)
    format: str  # bf16, fp16, fp32, AWQ, GPTQ, FP8, ...
    preset: str | None  # "1.5b", "7b awq", ...
    served: bool  # an r1 server serves it now
    path: str  # the snapshot folder (what vLLM loads)

    def as_json(self) -> dict:
        data = asdict(self)
        data["refs"] = list(self.refs)
        return data


# config.json's torch_dtype as the short names the Hub and vLLM use.
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}


def weight_format(cfg: dict) -> str:
    """The checkpoint's format as config.json says: its quantization method, else its dtype."""
    quant = cfg.get("quantization_config") or {}
    method = str(quant.get("quant_method") or "").lower()
    if method:
        return {"awq": "AWQ", "gptq": "GPTQ", "fp8": "FP8"}.get(method, method)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "").replace("torch.", "")
    return _DTYPES.get(dtype, dtype or "?")


def preset_name(repo: str) -> str | None:
    found = config.find_preset(repo)
    if found is None:
        return None
    key, _, family = found
    return f"{key} {family}" if family else key


def nearest(name: str, cache: Path | None = None) -> str | None:
    """The preset, `demo` or cached model NAME was most likely meant as (a typo: 'demoo', '1.5', a repo id one
    letter off), as `r1 serve` and `r1 run` take it; None when NAME is one of them, or near none. The one rule
    for "did you mean" about models: difflib's closeness over the presets' keys and repos, and the cache's ids."""
    import difflib

    known = {"demo": "demo"}
    for key, preset in config.PRESETS.items():
        known[key] = known[preset.repo.lower()] = key
    for model in cached_models(cache, served=set()):
        known.setdefault(model.repo.lower(), model.repo)
    wanted = name.strip().lower().rstrip("/")
    if wanted in known:
        return None
    close = difflib.get_close_matches(wanted, known, n=1, cutoff=0.6)
    return known[close[0]] if close else None


def is_served(repo: str, snapshot: Path | str, served: set[str]) -> bool:
    # A server names what vLLM was given: the Hub id, or (served from the cache by path) the snapshot folder.
    return repo.lower() in served or str(snapshot).lower().rstrip("/") in served


def scan(cache: Path | None = None):
    """huggingface_hub's scan of the cache (None when there is no cache yet)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(cache or machine.hf_hub_cache())
    except CacheNotFound:
        return None


def servable(revision) -> bool:
    """A revision vLLM can serve offline: the one rule (files.missing_to_serve), as serve and doctor ask it."""
    return files.ready_to_serve(Path(revision.snapshot_path))


def read_config(snapshot: Path) -> dict:
    try:
        return json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def cached_models(cache: Path | None = None, *, served: set[str]) -> list[CachedModel]:
    """The models in the cache that r1 can serve, one per revision, sorted by repo; SERVED: the models live
    servers serve (server/state.py's served_models, which the command hands in: hub/ reads no server record)."""
    info = scan(cache)
    if info is None:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            if not servable(rev):
                continue
            found.append(CachedModel(repo.repo_id, rev.commit_hash, tuple(sorted(rev.refs)), rev.size_on_disk,
                                     weight_format(read_config(rev.snapshot_path)), preset_name(repo.repo_id),
                                     is_served(repo.repo_id, rev.snapshot_path, served), str(rev.snapshot_path)))
    return sorted(found, key=lambda m: (m.repo.lower(), m.refs == (), m.commit))


def table(models: list[CachedModel]) -> list[str]:
    """`r1 models`'s lines: aligned columns, a header first."""
    rows = [("MODEL", "REVISION", "SIZE", "FORMAT", "PRESET", "SERVED")]
    for m in models:
        revision = m.commit[:7] + (f" ({', '.join(m.refs)})" if m.refs else "")
        rows.append((m.repo, revision, human(m.size), m.format, m.preset or "-", "yes" if m.served else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


@dataclass(frozen=True)
class Removal:
    repo: str
    commits: tuple[str, ...]
    freed: int  # bytes
    strategy: object  # huggingface_hub's DeleteCacheStrategy: execute() deletes


def plan_removal(repo: str, revision: str | None = None, cache: Path | None = None, *,
                 served: set[str]) -> Removal:
    """What deleting REPO (every revision, or REVISION: a commit, its prefix or a branch) from the cache frees.
    Refuses a model being served (in SERVED: server/state.py's served_models), and one the cache does not hold."""
    info = scan(cache)
    cached = next((r for r in (info.repos if info else ()) if r.repo_type == "model"
                   and r.repo_id.lower() == repo.lower()), None)
    where = str(cache or machine.hf_hub_cache())
    if cached is None:
        raise HubError(f"{repo} is not in the Hugging Face cache ({where})", status=ExitStatus.NOT_FOUND,
                       hint="`r1 models` lists what is there")
    revisions = [r for r in cached.revisions
                 if revision is None or r.commit_hash.startswith(revision) or revision in r.refs]
    if not revisions:
        raise HubError(f"{repo} has no revision {revision!r} in the cache", status=ExitStatus.NOT_FOUND,
                       hint="`r1 models` lists the revisions there")
    if any(is_served(cached.repo_id, r.snapshot_path, served) for r in revisions):
        raise HubError(f"{cached.repo_id} is being served: r1 will not delete its files under vLLM",
                       status=ExitStatus.IN_USE, hint="stop the server first: r1 stop")
    commits = tuple(r.commit_hash for r in revisions)
    strategy = info.delete_revisions(*commits)
    return Removal(cached.repo_id, commits, strategy.expected_freed_size, strategy)


def remove(removal: Removal) -> int:
    """Delete what REMOVAL planned; the bytes freed."""
    removal.strategy.execute()
    return removal.freed

