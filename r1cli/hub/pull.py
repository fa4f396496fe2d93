"""Pulling a model into the Hugging Face cache: which repo MODEL names, which of its files vLLM loads, whether
they fit on the disk, and the download itself (through huggingface_hub, so it resumes, takes HF_ENDPOINT,
HF_TOKEN and the cache location as every other tool does) with one progress display for the whole model.

`import r1cli.hub.pull` stays cheap: huggingface_hub and rich are imported by the functions that use them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from r1cli import config, machine
from r1cli.english import counted
from r1cli.errors import ExitStatus, HubError, R1Error, UsageError
from r1cli.hub import files, transfer
from r1cli.hub.errors import first_line, is_network_error, status_code
from r1cli.hub.transfer import Remote as RemoteFile
from r1cli.hub.transfer import repo_folder

__all__ = ["RemoteFile", "first_line", "is_network_error", "repo_folder"]  # evaluation/datasets.py, cache.py

# Tests (and a user who knows better) set the free space the size check sees, in bytes.
FREE_BYTES_OVERRIDE = "R1_FREE_BYTES_OVERRIDE"

_MODEL_HINT = "name a preset (" + ", ".join(config.PRESETS) + ") or a Hub id such as " + config.DEFAULT_MODEL


# ------------------------------------------------------------------------------------------ MODEL -> repo
# The Hub's own rule for a name (huggingface_hub's validate_repo_id), without importing it: letters, digits,
# '-', '_', '.', not starting with a separator, no '--' or '..' (they would clash with the cache's folders).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_repo_id(name: str) -> str:
    """NAME when it is a Hub model id ("org/name" or "name"); a UsageError saying why not otherwise."""
    if not name.strip():
        raise UsageError("MODEL is empty", hint=_MODEL_HINT)
    if any(ch.isspace() for ch in name):
        raise UsageError(f"{name!r} has a space in it: a Hub id has none", hint=_MODEL_HINT)
    if name.startswith(("/", "./", "~")) or ".." in name.split("/") or "/../" in name:
        raise UsageError(f"{name!r} is a path: r1 pull fetches from the Hub",
                         hint="serve a local folder as it is: r1 serve /path/to/model")
    parts = name.split("/")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts) or "--" in name or ".." in name \
            or name.endswith((".git", ".")):
        raise UsageError(f"{name!r} is not a Hub id (org/name: letters, digits, '-', '_' and '.')",
                         hint=_MODEL_HINT)
    return name


def check_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not revision.strip() or any(ch.isspace() for ch in revision) or ".." in revision:
        raise UsageError(f"--revision {revision!r} is not a branch, tag or commit",
                         hint="give a branch (main), a tag or a commit hash")
    return revision


def resolve_repo(model: str, quant: str | None = None) -> str:
    """The Hub repo MODEL names: a preset, a Hub id, or with --quant awq|gptq the preset's checkpoint of that
    format (the one `r1 serve MODEL --quant ...` serves)."""
    name = model.strip()
    if name.lower() == "demo":
        raise UsageError("the demo model ships inside r1: there is nothing to pull", hint="r1 serve demo")
    family = config.quant_family(quant)
    if quant is not None and family is None:
        raise UsageError(f"--quant {quant}: r1 pull takes awq or gptq (a pre-quantized checkpoint)",
                         hint="fp8 quantizes the bf16 checkpoint as it loads: pull without --quant")
    found = config.find_preset(name) if name else None
    if found is None:
        repo = check_repo_id(name)
        if family:
            raise UsageError(f"--quant {quant} on {repo}: r1 knows quantized checkpoints of its presets only",
                             hint="name the quantized repo itself")
        return repo
    key, preset, have = found
    if not family or have == family:
        return preset.repo if have is None else preset.checkpoint(have).repo
    checkpoint = preset.checkpoint(family)
    if checkpoint is None:
        others = [f"--quant {f}" for f in preset.quantized]
        raise UsageError(f"--quant {quant}: r1 knows no {family.upper()} checkpoint of {key}",
                         hint="use " + " or ".join(others) if others else "pull without --quant")
    return checkpoint.repo


# ------------------------------------------------------------------------------------------ the plan
# Files fetched at once (threads, each its own connection): huggingface_hub's own default for snapshot_download
# and `hf download` (max_workers=8). `r1 pull --workers` changes it.
WORKERS = 8


@dataclass
class PullPlan:
    """What a pull fetches, what the cache has of it already, and (after the pull) what it fetched."""
    repo: str
    revision: str  # as asked: a branch, tag or commit
    commit: str
    files: list[RemoteFile]
    cache: Path
    have: int = 0  # bytes of these files in the cache: whole blobs, and the parts an interrupted pull left
    missing: list[str] = field(default_factory=list)  # files not yet in the commit's snapshot
    fetched: int = 0  # bytes this pull downloaded
    seconds: float = 0.0
    # Small files read while planning (config.json, the weights index): written from here, not fetched again.
    read: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def to_fetch(self) -> int:
        return max(self.total - self.have, 0)

    @property
    def needed(self) -> bool:
        return bool(self.missing)

    @property
    def snapshot(self) -> Path:
        return repo_folder(self.cache, self.repo) / "snapshots" / self.commit

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("read")
        data.update(cache=str(self.cache), snapshot=str(self.snapshot), total=self.total, to_fetch=self.to_fetch)
        return data


def bytes_in_cache(cache: Path, repo: str, file: RemoteFile) -> int:
    """How much of FILE the cache holds: all of it, or the part an interrupted download left to resume."""
    if transfer.blob_path(cache, repo, file).is_file():
        return file.size
    partial = transfer.part_path(cache, repo, file)
    return min(partial.stat().st_size, file.size) if partial.is_file() else 0


def with_cache_state(plan: PullPlan) -> PullPlan:
    """PLAN with `have` and `missing` read from the cache as it is now."""
    plan.have = sum(bytes_in_cache(plan.cache, plan.repo, f) for f in plan.files)
    plan.missing = [f.name for f in plan.files if not (plan.snapshot / f.name).is_file()]
    return plan


def snapshot_of(repo: str, revision: str | None = None, cache: Path | None = None) -> Path | None:
    """The snapshot folder vLLM, offline, loads for REPO at REVISION (the commit refs/REVISION names, or
    REVISION itself when it is a commit); None when the cache has none."""
    folder = repo_folder(cache or machine.hf_hub_cache(), repo)
    ref = folder / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    if commit and (folder / "snapshots" / commit).is_dir():
        return folder / "snapshots" / commit
    return None


def missing_to_serve(repo: str, revision: str | None = None, cache: Path | None = None, *,
                     tokenizer_only: bool = False, load_format: str | None = None) -> list[str]:
    """What the cache lacks for vLLM to serve REPO at REVISION offline ([]: ready). The one rule for "in the
    cache" (files.missing_to_serve on the snapshot the ref names): serve, its --dry-run, doctor, models and rm
    all ask it. TOKENIZER_ONLY: REPO is vLLM's --tokenizer (files.missing_for_tokenizer); LOAD_FORMAT: vLLM's
    --load-format (None: its default)."""
    snapshot = snapshot_of(repo, revision, cache)
    if snapshot is None:
        return ["the snapshot " + (revision or "main") + " names"]
    return files.missing_for_tokenizer(snapshot) if tokenizer_only else files.missing_to_serve(snapshot, load_format)


def is_complete(repo: str, revision: str | None = None, cache: Path | None = None, *,
                tokenizer_only: bool = False, load_format: str | None = None) -> bool:
    """Whether vLLM can serve REPO at REVISION offline from the cache (missing_to_serve)."""
    return not missing_to_serve(repo, revision, cache, tokenizer_only=tokenizer_only, load_format=load_format)


# ------------------------------------------------------------------------------------------ disk space
def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds PATH (or would: the nearest folder that exists)."""
    override = os.environ.get(FREE_BYTES_OVERRIDE)
    if override:
        return int(override)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_space(plan: PullPlan) -> None:
    """Refuse before the first byte when what is left to fetch would not fit beside what the disk holds."""
    free = free_bytes(plan.cache)
    if plan.to_fetch <= free:
        return
    raise HubError(f"{plan.repo} needs {human(plan.to_fetch)} and the cache's filesystem has {human(free)} free "
                   f"(cache: {plan.cache})", status=ExitStatus.NO_SPACE,
                   hint="free some space, or move the cache to a larger disk: export HF_HOME=/larger/disk/huggingface "
                        "(r1 and vLLM both read it)")


def human(n: float) -> str:
    """Bytes as the Hub and Rich show them (decimal units): 3.5 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ------------------------------------------------------------------------------------------ the Hub's errors
def hub_error(exc: BaseException, repo: str, revision: str | None) -> R1Error | None:
    """The one line (and exit status) for what the Hub, or the way to it, answered; None when EXC is not that."""
    from huggingface_hub import errors

    endpoint = _endpoint() or "https://huggingface.co"
    if isinstance(exc, errors.GatedRepoError):
        return HubError(f"{repo} is gated: its authors must grant you access before it can be downloaded",
                        status=ExitStatus.GATED,
                        hint=f"accept its terms on {endpoint}/{repo}, then give a token: export HF_TOKEN=hf_... "
                             "(or `hf auth login`)")
    if isinstance(exc, (errors.RevisionNotFoundError, _RevisionMissing)):
        return HubError(f"{repo} has no revision {revision!r}", status=ExitStatus.BAD_REVISION,
                        hint="give a branch (main), a tag or a commit the repo has, or leave --revision out")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"no model {repo} on the Hub ({endpoint})", status=ExitStatus.NOT_FOUND,
                        hint=_MODEL_HINT + "; a private repo needs a token that may read it (HF_TOKEN)")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return _offline_error(repo)
    if isinstance(exc, errors.HfHubHTTPError) and status_code(exc) == 401:
        return HubError("the Hub refused the token (HF_TOKEN or the saved login): invalid or expired",
                        status=ExitStatus.BAD_TOKEN,
                        hint="make a new read token on the Hub's settings page and export HF_TOKEN=hf_..., "
                             "or unset HF_TOKEN for public models")
    if isinstance(exc, errors.HfHubHTTPError):
        return HubError(f"the Hub answered HTTP {status_code(exc)} for {repo}: {str(exc).splitlines()[0]}",
                        hint="try again later; HF_ENDPOINT picks another endpoint or mirror")
    if isinstance(exc, errors.LocalEntryNotFoundError) or is_network_error(exc):
        return HubError(f"the Hub ({endpoint}) cannot be reached to fetch {repo}: {first_line(exc)}",
                        status=ExitStatus.NO_NETWORK,
                        hint="check the network (a proxy: HTTPS_PROXY), or HF_ENDPOINT for a mirror")
    return None


def _offline_error(repo: str) -> HubError:
    return HubError(f"{repo} is not in the cache and HF_HUB_OFFLINE forbids downloading it",
                    status=ExitStatus.NO_NETWORK,
                    hint="unset HF_HUB_OFFLINE, or pull on a machine with a network and copy the cache (HF_HOME)")


def _endpoint() -> str | None:
    # Read at each call, not once at import as huggingface_hub's constants are: a test (or `r1 serve` in
    # the same process) may set HF_ENDPOINT after huggingface_hub was imported.
    return os.environ.get("HF_ENDPOINT") or None


# ------------------------------------------------------------------------------------------ asking the Hub
def plan_pull(repo: str, revision: str | None = None, cache: Path | None = None, *,
              tokenizer_only: bool = False, load_format: str | None = None) -> PullPlan:
    """What pulling REPO at REVISION fetches: the commit, the files vLLM loads (with LOAD_FORMAT, its
    --load-format) with their sizes (the Hub's metadata: nothing is downloaded), and what the cache has of them."""
    if machine.hf_offline_env():
        raise _offline_error(repo)
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=_endpoint())
    try:
        # An explicit revision: some mirrors answer only /revision/<rev> for the repo's metadata. A timeout
        # (huggingface_hub's for metadata, HF_HUB_ETAG_TIMEOUT, 10 s): its client has none, and a network that
        # drops packets would hold `r1 pull` and `r1 serve` here for good.
        info = api.model_info(repo, revision=revision or "main", timeout=constants.HF_HUB_ETAG_TIMEOUT)
        entries = list(api.list_repo_tree(repo, revision=info.sha, recursive=False))
    except Exception as exc:  # noqa: BLE001 - mapped to one line, or raised as it was
        error = hub_error(exc, repo, revision)
        if error is None:
            raise
        if error.status == ExitStatus.NOT_FOUND and revision not in (None, "main") and _exists(api, repo):
            # Some mirrors (olah) answer an unknown revision as an unknown repo: the repo is there.
            error = hub_error(_RevisionMissing(), repo, revision)
        raise error from None
    listed = {e.path: _remote(e) for e in entries if getattr(e, "size", None) is not None and hasattr(e, "blob_id")}
    plan = PullPlan(repo, revision or "main", info.sha, [], cache or machine.hf_hub_cache())
    # What vLLM loads hangs on two small files: config.json (its auto_map asks for *.py) and the weights' index
    # (its weight_map names the shards). Read now (a dry run too), written by the pull from memory.
    index_file = files.index_name(listed, load_format)
    for name in (files.CONFIG, None if tokenizer_only else index_file):
        if name in listed:
            blob = transfer.blob_path(plan.cache, repo, listed[name])
            plan.read[name] = blob.read_bytes() if blob.is_file() else _read(repo, info.sha, listed[name])
    config_json, index = (_json(plan.read.get(n)) for n in (files.CONFIG, index_file))
    if tokenizer_only:  # vLLM's --tokenizer: its files alone
        plan.files = [listed[n] for n in files.tokenizer_files(listed, config_json)]
        return with_cache_state(plan)
    weight_map = (index or {}).get("weight_map")
    names = files.vllm_files(listed, config_json, weight_map, load_format)
    patterns = files.reads(load_format).patterns
    if patterns and not files.weight_files(names, weight_map, load_format):
        loads = f"vLLM loads with --load-format {load_format}" if load_format else "vLLM loads"
        raise HubError(f"{repo} has no weights {loads} ({', '.join(patterns)} at its top level)",
                       status=ExitStatus.NOT_FOUND, hint="name a model repo with safetensors weights")
    absent = [n for n in names if n not in listed]
    if absent:
        raise HubError(f"{repo}'s {index_file} names files the repo does not have: {', '.join(absent[:3])}",
                       status=ExitStatus.NOT_FOUND, hint="name another revision (--revision) or repo")
    plan.files = [listed[n] for n in names]
    return with_cache_state(plan)


def _remote(entry) -> RemoteFile:
    """A file as the Hub's tree lists it (huggingface_hub's RepoFile)."""
    sha256 = entry.lfs.sha256 if entry.lfs else None
    return RemoteFile(entry.path, entry.size, sha256 or entry.blob_id, sha256, bool(getattr(entry, "xet_hash", None)))


def _read(repo: str, commit: str, file: RemoteFile) -> bytes:
    try:
        return transfer.get_bytes(_endpoint(), repo, commit, file)
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to one line, or raised as it was
        error = hub_error(exc, repo, commit)
        if error is None:
            raise
        raise error from None


def _json(data: bytes | None) -> dict | None:
    import json

    try:
        value = json.loads(data) if data else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _exists(api, repo: str) -> bool:
    try:
        api.model_info(repo, revision="main")
        return True
    except Exception:  # noqa: BLE001 - any failure: not known to exist
        return False


class _RevisionMissing(Exception):
    """Stands for the Hub's RevisionNotFoundError where a mirror answered RepoNotFound instead."""


def write_ref(plan: PullPlan) -> None:
    """Point refs/<revision> at the commit pulled, as snapshot_download does: files are fetched by commit (so
    one pull never mixes two), which leaves the branch's ref unwritten, and `r1 models` and is_complete read it."""
    if plan.revision == plan.commit:
        return
    ref = repo_folder(plan.cache, plan.repo) / "refs" / plan.revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.is_file() or ref.read_text().strip() != plan.commit:
        ref.write_text(plan.commit)


# ------------------------------------------------------------------------------------------ one pull at a time
@contextlib.contextmanager
def pull_lock(cache: Path, repo: str, waiting):
    """Held while this process pulls REPO into CACHE. A second pull of the same model waits for the first
    (calling WAITING once), then finds its files there: huggingface_hub's own per-file locks keep two
    writers off one blob, this one keeps two progress bars from fighting over the same bytes."""
    folder = cache / ".locks" / repo_folder(cache, repo).name
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "r1-pull.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ progress
class PlainDisplay:
    """Progress as plain lines on stderr, for logs and pipes: one per file and one every EVERY seconds.
    LABEL names what pulls (`r1 serve`'s stage: "NAME: downloading"); `r1 pull`'s own says "pulling"."""

    EVERY = 10.0

    def __init__(self, env, every: float = EVERY, label: str | None = None):
        self.env, self.every, self.label = env, every, label or "pulling"

    def start(self, plan: PullPlan) -> None:
        self.plan, self.done, self.total = plan, 0, plan.to_fetch
        self.t0 = self.last = time.monotonic()
        already = f" ({human(plan.have)} already in the cache)" if plan.have else ""
        self.env.note(f"r1: {self.label} {plan.repo}@{plan.commit[:7]}: {human(plan.to_fetch)} to fetch "
                      f"in {counted(len(plan.missing), 'file')}{already}")

    def file(self, file: RemoteFile) -> None:
        self.env.note(f"r1: fetching {file.name} ({human(file.size)})")

    def finished(self, file: RemoteFile) -> None:
        pass

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0
            self.env.note(f"r1: {human(self.done)} of {human(self.total)}, {human(rate)}/s, {eta:.0f} s left")

    def grow(self, n: int) -> None:
        self.total += n

    def stop(self) -> None:
        pass


# Rich redraws the bar in a thread of its own: at its default 10 Hz that drawing took 2.7% of a pull's time
# in CPU on 2 busy cores (benchmarks/pull_progress_cost.py); at 4 Hz, which still moves smoothly, 0 to 2.3%
# over two runs, about the benchmark's noise there; later 0.3% and 0.6% (--mb 200, 5 and 10 runs: README).
REFRESH_HZ = 4


class RichDisplay:
    """One Rich bar for the whole model on stderr: bytes, rate, ETA and the files being fetched (the largest
    in flight, and how many more), after the repo's id (and LABEL before it: `r1 serve`'s stage,
    "NAME: downloading")."""

    def __init__(self, env, label: str | None = None):
        self.env, self.label = env, label
        self.progress = None
        self.flying: list[RemoteFile] = []

    def start(self, plan: PullPlan) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[file]}"),
                                 console=self.env.err, transient=False, refresh_per_second=REFRESH_HZ)
        description = f"{self.label} {plan.repo}" if self.label else plan.repo
        self.task = self.progress.add_task(markup_escape(description), total=plan.to_fetch, file="")
        self.progress.start()

    def file(self, file: RemoteFile) -> None:
        self.flying.append(file)
        self._show()

    def finished(self, file: RemoteFile) -> None:
        if file in self.flying:
            self.flying.remove(file)
        if self.flying:  # the last file's name stays drawn once all are in
            self._show()

    def _show(self) -> None:
        largest = max(self.flying, key=lambda f: f.size)
        more = f" +{len(self.flying) - 1}" if len(self.flying) > 1 else ""
        self.progress.update(self.task, file=largest.name + more)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def grow(self, n: int) -> None:
        self.progress.update(self.task, total=self.progress.tasks[0].total + n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, file="")
            self.progress.stop()
            self.progress = None


class NoDisplay:
    """No progress at all (the benchmark's baseline)."""

    def start(self, plan): pass
    def file(self, file): pass
    def finished(self, file): pass
    def advance(self, n): pass
    def grow(self, n): pass
    def stop(self): pass


def display_for(env, label: str | None = None):
    return RichDisplay(env, label=label) if env.stderr_isatty else PlainDisplay(env, label=label)


def markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def download(plan: PullPlan, display, workers: int = WORKERS) -> None:
    """Fetch PLAN's missing files into the cache, WORKERS at once, feeding DISPLAY; config.json last, once
    every other file is in (a pull cut short leaves no config.json: nothing looks servable). Each file lands
    whole and verified (transfer.fetch) or stays an .incomplete part the next pull resumes. On Ctrl-C the
    transfers stop within a chunk and keep what arrived."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    lock = threading.Lock()
    stop = threading.Event()

    def on_bytes(n: int) -> None:
        with lock:
            if n < 0:  # a server that ignored the Range sends the file over: those bytes are to fetch again
                display.grow(-n)
            else:
                plan.fetched += n
                display.advance(n)

    def one(file: RemoteFile) -> None:
        with lock:
            display.file(file)
        if file.name in plan.read:
            if transfer.store_bytes(plan.cache, plan.repo, file, plan.read[file.name]):
                on_bytes(file.size)
        else:
            transfer.fetch(plan.cache, plan.repo, plan.commit, file, endpoint=_endpoint(), on_bytes=on_bytes, stop=stop)
        transfer.link(plan.cache, plan.repo, plan.commit, file)
        with lock:
            display.finished(file)

    todo = [f for f in plan.files if f.name in plan.missing]
    last = [f for f in todo if f.name == files.CONFIG]
    rest = sorted((f for f in todo if f.name != files.CONFIG), key=lambda f: -f.size)  # the longest first
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="r1-pull")
    try:
        for batch in (rest, last):
            futures = [pool.submit(one, f) for f in batch]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                stop.set()
                wait(futures)
                # The failure itself, not a transfer it stopped.
                errors = [f.exception() for f in futures if f.exception() is not None]
                _raise_mapped(next((e for e in errors if not isinstance(e, transfer.Stopped)), errors[0]), plan)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _raise_mapped(exc: BaseException, plan: PullPlan) -> None:
    if isinstance(exc, R1Error):
        raise exc
    error = hub_error(exc, plan.repo, plan.revision)
    if error is None:
        raise exc
    raise error from None


def pull(env, repo: str, revision: str | None = None, *, display=None, workers: int = WORKERS,
         tokenizer_only: bool = False, load_format: str | None = None) -> PullPlan:
    """Pull REPO (a Hub id) at REVISION into the Hugging Face cache; the plan, with what was fetched.

    Checks the space first, waits for another pull of the same model, and on Ctrl-C leaves what it fetched
    (a HubError with status INTERRUPTED saying how much, so the next pull resumes)."""
    plan = plan_pull(repo, check_revision(revision), tokenizer_only=tokenizer_only, load_format=load_format)
    check_space(plan)
    if not plan.needed:
        write_ref(plan)
        return plan
    display = display or display_for(env)
    waiting = lambda: env.note(f"r1: another pull of {repo} is running: waiting for it (Ctrl-C stops waiting)")  # noqa: E731
    with pull_lock(plan.cache, repo, waiting):
        with_cache_state(plan)  # the other pull may have fetched it all meanwhile
        if not plan.needed:
            return plan
        check_space(plan)
        display.start(plan)
        start = time.monotonic()
        try:
            download(plan, display, workers)
        except KeyboardInterrupt:
            display.stop()
            with_cache_state(plan)
            raise HubError(f"interrupted: {human(plan.have)} of {human(plan.total)} of {repo} is in the cache",
                           status=ExitStatus.INTERRUPTED,
                           hint=f"`r1 pull {repo}` continues from there, without fetching it again") from None
        finally:
            display.stop()
        plan.seconds = time.monotonic() - start
        write_ref(plan)
    return with_cache_state(plan)


def ensure_cached(env, model_id: str, revision: str | None = None, *, dry_run: bool = False,
                  display=None, workers: int = WORKERS, tokenizer_only: bool = False,
                  load_format: str | None = None) -> PullPlan | None:
    """What `r1 serve` calls before starting vLLM: pull MODEL_ID unless the cache has it.

    MODEL_ID is what serve resolved (a Hub id, after --quant picked a checkpoint; a local path or the demo
    need nothing). Returns None when nothing is to be done (a local path, or a snapshot vLLM can serve offline:
    is_complete, the one rule); otherwise the PullPlan: after a pull
    (with the same progress as `r1 pull`), what it fetched (`plan.fetched` bytes, `plan.snapshot`); with
    DRY_RUN, what a pull would fetch (`plan.to_fetch` bytes of `plan.total`), nothing downloaded. DISPLAY:
    the progress display (default: display_for(env), as `r1 pull`'s). TOKENIZER_ONLY: MODEL_ID is vLLM's
    --tokenizer (its tokenizer's files alone). LOAD_FORMAT: vLLM's --load-format (what weights it reads).
    Raises HubError (status NO_SPACE, NO_NETWORK, NOT_FOUND, GATED, BAD_TOKEN, BAD_REVISION, INTERRUPTED)
    or UsageError, each with its one line and fix."""
    if machine.is_local_path(model_id) or Path(model_id) == config.demo_model_dir():
        return None
    repo = check_repo_id(model_id)
    # By the ref vLLM reads (main unless a revision is given): a snapshot the ref does not name is no use offline.
    if is_complete(repo, revision or "main", tokenizer_only=tokenizer_only, load_format=load_format):
        return None
    if dry_run:
        plan = plan_pull(repo, check_revision(revision), tokenizer_only=tokenizer_only, load_format=load_format)
        check_space(plan)
        return plan
    return pull(env, repo, revision, display=display, workers=workers, tokenizer_only=tokenizer_only,
                load_format=load_format)
