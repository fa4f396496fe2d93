"""Pulling a model into the Hugging Face cache: which repo MODEL names, which of its files vLLM loads, whether
they fit on the disk, and the download itself (through huggingface_hub, so it resumes, takes HF_ENDPOINT,
HF_TOKEN and the cache location as every other tool does) with one progress display for the whole model.

`import r1cli.hub.pull` stays cheap: huggingface_hub and rich are imported by the functions that use them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from r1cli import config, machine
from r1cli.errors import ExitStatus, HubError, R1Error, UsageError

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


# ------------------------------------------------------------------------------------------ which files
# vLLM's order of preference for weights (its default load format): the first present wins, as it does.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# What transformers and vLLM read beside the weights: config.json, generation_config.json, the tokenizer's
# files (tokenizer.json, tokenizer_config.json, special tokens, vocab/merges, sentencepiece models), chat
# templates and quantization configs. Top level only: subfolders hold other formats (Llama's original/).
METADATA_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")
# Pulled last, so that a snapshot holding it is a complete pull (is_complete): a pull interrupted earlier
# leaves no config.json, and `r1 serve` pulls again instead of handing vLLM half a model.
LAST = "config.json"


def vllm_files(names: list[str]) -> list[str]:
    """The files of a repo that vLLM loads, in the order a pull fetches them (config.json last)."""
    top = [n for n in names if "/" not in n]
    weights: list[str] = []
    for suffix in WEIGHT_SUFFIXES:
        weights = [n for n in top if n.endswith(suffix)]
        if weights:
            break
    chosen = weights[0].rsplit(".", 1)[-1] if weights else None
    # An index belongs to one format: model.safetensors.index.json is no use when vLLM reads the .bin files.
    meta = [n for n in top if n.endswith(METADATA_SUFFIXES)
            and not (n.endswith(".index.json") and f".{chosen}." not in n)]
    small = sorted(n for n in meta if n != LAST)
    return small + sorted(weights) + ([LAST] if LAST in meta else [])


# ------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    etag: str  # its blob's name in the cache: the LFS sha256, else the git blob id


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
        data.update(cache=str(self.cache), snapshot=str(self.snapshot), total=self.total, to_fetch=self.to_fetch)
        return data


def repo_folder(cache: Path, repo: str) -> Path:
    """The repo's folder in the cache, as huggingface_hub names it."""
    return cache / ("models--" + repo.replace("/", "--"))


def bytes_in_cache(folder: Path, file: RemoteFile) -> int:
    """How much of FILE the cache holds: all of it, or the part an interrupted download left to resume."""
    blob = folder / "blobs" / file.etag
    if blob.is_file():
        return file.size
    partial = folder / "blobs" / (file.etag + ".incomplete")
    return min(partial.stat().st_size, file.size) if partial.is_file() else 0


def with_cache_state(plan: PullPlan) -> PullPlan:
    """PLAN with `have` and `missing` read from the cache as it is now."""
    folder = repo_folder(plan.cache, plan.repo)
    plan.have = sum(bytes_in_cache(folder, f) for f in plan.files)
    plan.missing = [f.name for f in plan.files if not (plan.snapshot / f.name).is_file()]
    return plan


def is_complete(repo: str, revision: str | None = None, cache: Path | None = None) -> bool:
    """Whether the cache holds a pulled snapshot of REPO (config.json comes last in a pull: see LAST)."""
    folder = repo_folder(cache or machine.hf_hub_cache(), repo)
    ref = folder / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    if commit:
        return _has_its_shards(folder / "snapshots" / commit)
    return any(_has_its_shards(config.parent) for config in folder.glob(f"snapshots/*/{LAST}"))


def _has_its_shards(snapshot: Path) -> bool:
    """SNAPSHOT has config.json and, where an index names the weights' shards, each of them: a download that
    fetched config.json first (vLLM's own, `hf download` cut short) is not taken for a whole model."""
    if not (snapshot / LAST).is_file():
        return False
    # The index of the format vLLM would load from what is there (as a pull chooses: vllm_files).
    for name in [n for n in vllm_files([p.name for p in snapshot.iterdir()]) if n.endswith(".index.json")]:
        try:
            shards = set(json.loads((snapshot / name).read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        if not all((snapshot / shard).is_file() for shard in shards):
            return False
    return True


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
    if isinstance(exc, errors.HfHubHTTPError) and _status_code(exc) == 401:
        return HubError("the Hub refused the token (HF_TOKEN or the saved login): invalid or expired",
                        status=ExitStatus.BAD_TOKEN,
                        hint="make a new read token on the Hub's settings page and export HF_TOKEN=hf_..., "
                             "or unset HF_TOKEN for public models")
    if isinstance(exc, errors.HfHubHTTPError):
        return HubError(f"the Hub answered HTTP {_status_code(exc)} for {repo}: {str(exc).splitlines()[0]}",
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


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_network_error(exc: BaseException) -> bool:
    # huggingface_hub raises its HTTP client's own transport errors (httpx's or httpx2's): tell them by name.
    names = {cls.__name__ for cls in type(exc).__mro__}
    transport = {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "TransportError",
                 "RemoteProtocolError", "ProxyError"}
    return bool(names & transport) or isinstance(exc, (ConnectionError, TimeoutError))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _endpoint() -> str | None:
    # Read at each call, not once at import as huggingface_hub's constants are: a test (or `r1 serve` in
    # the same process) may set HF_ENDPOINT after huggingface_hub was imported.
    return os.environ.get("HF_ENDPOINT") or None


# ------------------------------------------------------------------------------------------ asking the Hub
def plan_pull(repo: str, revision: str | None = None, cache: Path | None = None) -> PullPlan:
    """What pulling REPO at REVISION fetches: the commit, the files vLLM loads with their sizes (the Hub's
    metadata: nothing is downloaded), and what the cache has of them."""
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
    sized = {e.path: e for e in entries if getattr(e, "size", None) is not None and hasattr(e, "blob_id")}
    names = vllm_files(list(sized))
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        raise HubError(f"{repo} has no weights vLLM loads ({', '.join(WEIGHT_SUFFIXES)} files at its top level)",
                       status=ExitStatus.NOT_FOUND, hint="name a model repo with safetensors weights")
    files = [RemoteFile(n, sized[n].size, sized[n].lfs.sha256 if sized[n].lfs else sized[n].blob_id) for n in names]
    return with_cache_state(PullPlan(repo, revision or "main", info.sha, files, cache or machine.hf_hub_cache()))


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
                      f"in {len(plan.missing)} files{already}")

    def file(self, file: RemoteFile) -> None:
        self.env.note(f"r1: fetching {file.name} ({human(file.size)})")

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
    """One Rich bar for the whole model on stderr: bytes, rate, ETA and the file being fetched, after the
    repo's id (and LABEL before it: `r1 serve`'s stage, "NAME: downloading")."""

    def __init__(self, env, label: str | None = None):
        self.env, self.label = env, label
        self.progress = None

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
        self.progress.update(self.task, file=file.name)

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
    def advance(self, n): pass
    def grow(self, n): pass
    def stop(self): pass


def display_for(env, label: str | None = None):
    return RichDisplay(env, label=label) if env.stderr_isatty else PlainDisplay(env, label=label)


def markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _bar_class(plan: PullPlan, display):
    """A stand-in for the tqdm class huggingface_hub draws each file's bar with: it feeds the one display."""

    class Meter:
        resume = 0  # bytes of the file already on disk when its download starts (fetch_blob sets it)

        def __init__(self, *args, initial: int = 0, **kwargs):
            if initial < self.resume:
                # The server ignored the Range (olah's local mirror does): huggingface_hub started the file
                # over, so the part counted as in the cache is to be fetched again.
                display.grow(self.resume - initial)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int = 1) -> None:
            if n > 0:
                plan.fetched += n
                display.advance(n)

        def close(self) -> None:
            pass

        def __getattr__(self, name):  # set_description, refresh, ...: nothing to do
            return lambda *args, **kwargs: None

    return Meter


# ------------------------------------------------------------------------------------------ pulling
def download(plan: PullPlan, display) -> None:
    """Fetch PLAN's missing files into the cache, feeding DISPLAY. Each file lands whole or stays an
    .incomplete blob that the next pull resumes with a Range request (fetch_blob)."""
    from huggingface_hub import hf_hub_download

    meter = _bar_class(plan, display)
    for file in plan.files:
        if file.name not in plan.missing:
            continue
        display.file(file)
        try:
            fetch_blob(plan, file, meter)
            # The blob is in place: this only links the snapshot to it, the cache's way (no byte fetched).
            hf_hub_download(plan.repo, file.name, revision=plan.commit, cache_dir=plan.cache, endpoint=_endpoint())
        except Exception as exc:  # noqa: BLE001 - mapped to one line, or raised as it was
            error = hub_error(exc, plan.repo, plan.revision)
            if error is None:
                raise
            raise error from None


# http_get reads and writes in chunks of huggingface_hub's DOWNLOAD_CHUNK_SIZE (10 MB): the bar moves, and
# the part on disk grows, by that much. 1 MiB: a Ctrl-C loses at most 1 MiB, and the bar moves smoothly even
# on a slow link, for no measurable cost (benchmarks/pull_progress_cost.py).
CHUNK = 1 << 20


def fetch_blob(plan: PullPlan, file: RemoteFile, meter) -> None:
    """Download FILE's blob into the cache, resuming the part an interrupted pull left.

    Not hf_hub_download's own download: since huggingface_hub 2.x it writes each attempt to a file of its own
    and deletes it on any failure, Ctrl-C included, so nothing is resumed across runs. Here the part stays
    as blobs/<etag>.incomplete (the name huggingface_hub 1.x resumed from) and the next pull asks for the rest
    (http_get's Range request), under huggingface_hub's per-blob lock, so no other writer (another pull,
    vLLM) touches the blob meanwhile."""
    from huggingface_hub import constants, file_download, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    folder = repo_folder(plan.cache, plan.repo)
    meta = get_hf_file_metadata(hf_hub_url(plan.repo, file.name, revision=plan.commit, endpoint=_endpoint()),
                                endpoint=_endpoint())
    etag = meta.etag or file.etag
    blob = folder / "blobs" / etag
    if blob.is_file():
        return
    lock = plan.cache / ".locks" / folder.name / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    blob.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if blob.is_file():
            return
        part = blob.with_name(etag + ".incomplete")
        chunk, constants.DOWNLOAD_CHUNK_SIZE = constants.DOWNLOAD_CHUNK_SIZE, CHUNK
        try:
            with open(part, "ab") as fh:
                meter.resume = fh.tell()
                file_download.http_get(meta.location, fh, resume_size=fh.tell(), headers=build_hf_headers(),
                                       expected_size=meta.size, displayed_filename=file.name, tqdm_class=meter)
        finally:
            constants.DOWNLOAD_CHUNK_SIZE = chunk
        os.replace(part, blob)


def pull(env, repo: str, revision: str | None = None, *, display=None) -> PullPlan:
    """Pull REPO (a Hub id) at REVISION into the Hugging Face cache; the plan, with what was fetched.

    Checks the space first, waits for another pull of the same model, and on Ctrl-C leaves what it fetched
    (a HubError with status INTERRUPTED saying how much, so the next pull resumes)."""
    plan = plan_pull(repo, check_revision(revision))
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
            download(plan, display)
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
                  display=None) -> PullPlan | None:
    """What `r1 serve` calls before starting vLLM: pull MODEL_ID unless the cache has it.

    MODEL_ID is what serve resolved (a Hub id, after --quant picked a checkpoint; a local path or the demo
    need nothing). Returns None when nothing is to be done (a local path, or a complete snapshot in the
    cache, the one refs/main or REVISION names: it holds config.json, which a pull fetches last, and every
    shard its weights index names); otherwise the PullPlan: after a pull
    (with the same progress as `r1 pull`), what it fetched (`plan.fetched` bytes, `plan.snapshot`); with
    DRY_RUN, what a pull would fetch (`plan.to_fetch` bytes of `plan.total`), nothing downloaded. DISPLAY:
    the progress display (default: display_for(env), as `r1 pull`'s).
    Raises HubError (status NO_SPACE, NO_NETWORK, NOT_FOUND, GATED, BAD_TOKEN, BAD_REVISION, INTERRUPTED)
    or UsageError, each with its one line and fix."""
    if machine.is_local_path(model_id) or Path(model_id) == config.demo_model_dir():
        return None
    repo = check_repo_id(model_id)
    # By the ref vLLM reads (main unless a revision is given): a snapshot the ref does not name is no use offline.
    if is_complete(repo, revision or "main"):
        return None
    if dry_run:
        plan = plan_pull(repo, check_revision(revision))
        check_space(plan)
        return plan
    return pull(env, repo, revision, display=display)
