"""One file of a pull, from the Hub into huggingface_hub's cache, resumed across runs and verified: the one
place r1 relies on how huggingface_hub lays out its cache rather than on a function of it.

Why not hf_hub_download for every file: since huggingface_hub 2.x it writes each attempt to a file of its own
and deletes it on any failure, Ctrl-C included, so nothing is resumed across runs, and it checks no sha256.
Here a file's bytes go to blobs/<etag>.incomplete (the name huggingface_hub 1.x resumed from), the next pull
asks for the rest with a Range request, every byte goes through the file's digest (the LFS sha256 the Hub
lists, else the git blob id), and only a file whose digest matches becomes blobs/<etag>, linked from
snapshots/<commit>/<name> as huggingface_hub links it (a relative symlink). tests/hub/test_transfer.py fails
when huggingface_hub stops finding files laid out so (try_to_load_from_cache, hf_hub_download offline).

A Xet-backed file (the tree lists its xet hash) goes through hf_hub_download, which uses hf_xet where it is
installed; its blob is checked against the sha256 after.

HTTP goes through huggingface_hub's own client (get_session: its proxies, its headers and token,
build_hf_headers; hf_raise_for_status for the Hub's errors).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from r1cli.errors import ExitStatus, HubError
from r1cli.hub.errors import first_line, is_network_error, status_code

# Bytes read at a time from a part already on disk (to hash it before resuming).
CHUNK = 1 << 20
# A transfer that breaks (a dropped connection, a 5xx) is resumed from where it stopped this many times
# running without a byte arriving, waiting RETRY_WAIT seconds, doubled each time, before the next try.
RETRIES = 4
RETRY_WAIT = 0.25
# What a kernel says when the disk (or a quota, or the file-size limit) refuses a write.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Remote:
    """A file of a repo at a commit, as the Hub's tree lists it."""
    name: str
    size: int
    etag: str  # its blob's name in the cache: the LFS sha256, else the git blob id
    sha256: str | None = None  # LFS files
    xet: bool = False  # Xet-backed (the tree gave its xet hash)


class Stopped(Exception):
    """The pull was told to stop (Ctrl-C in the main thread): the part stays for the next pull."""


class Corrupt(HubError):
    pass


def digest_for(file: Remote):
    """A hash object that ends as FILE's etag when fed its bytes: sha256 for LFS files, git's blob id else."""
    if file.sha256:
        return hashlib.sha256()
    digest = hashlib.sha1()  # noqa: S324 - git's blob id is sha1 of "blob <size>\0<bytes>"
    digest.update(b"blob %d\0" % file.size)
    return digest


def expected(file: Remote) -> str:
    return file.sha256 or file.etag


def repo_folder(cache: Path, repo: str) -> Path:
    """The repo's folder in the cache, as huggingface_hub names it."""
    return cache / ("models--" + repo.replace("/", "--"))


def blob_path(cache: Path, repo: str, file: Remote) -> Path:
    return repo_folder(cache, repo) / "blobs" / file.etag


def part_path(cache: Path, repo: str, file: Remote) -> Path:
    return repo_folder(cache, repo) / "blobs" / (file.etag + ".incomplete")


def link(cache: Path, repo: str, commit: str, file: Remote) -> Path:
    """snapshots/<commit>/<name> -> ../../blobs/<etag>, as huggingface_hub links it."""
    target = repo_folder(cache, repo) / "snapshots" / commit / file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(blob_path(cache, repo, file), target.parent)
    if target.is_symlink() and os.readlink(target) == relative:
        return target
    if target.is_symlink() or target.exists():
        target.unlink()  # a link to another blob (the file changed at this commit's name), or a copy
    os.symlink(relative, target)
    return target


def url(endpoint: str | None, repo: str, commit: str, name: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, name, revision=commit, endpoint=endpoint)


def get_bytes(endpoint: str | None, repo: str, commit: str, file: Remote) -> bytes:
    """A small file's bytes (config.json, the weights index), verified, without writing them anywhere."""
    from huggingface_hub import get_session, hf_raise_for_status
    from huggingface_hub.utils import build_hf_headers

    response = get_session().get(url(endpoint, repo, commit, file.name), headers=build_hf_headers(),
                                 timeout=_timeout())
    hf_raise_for_status(response)
    data = response.content
    digest = digest_for(file)
    digest.update(data)
    if len(data) != file.size or digest.hexdigest() != expected(file):
        raise _corrupt(file, repo)
    return data


def store_bytes(cache: Path, repo: str, file: Remote, data: bytes) -> bool:
    """Put bytes already fetched and verified (get_bytes) into the cache as FILE's blob; False when it was there."""
    blob = blob_path(cache, repo, file)
    if blob.is_file():
        return False
    blob.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(cache, repo, file)
    try:
        part.write_bytes(data)
    except OSError as exc:
        raise _disk_error(exc, file, cache) if exc.errno in _DISK_FULL else exc
    os.replace(part, blob)
    return True


def fetch(cache: Path, repo: str, commit: str, file: Remote, *, endpoint: str | None, on_bytes,
          stop: threading.Event) -> None:
    """Download FILE's blob into the cache (nothing when it is there), resuming the part a pull left; ON_BYTES
    gets each count of bytes that arrives (negative when a server that ignored the Range sent the file over).
    Raises HubError: a digest that does not match (the part is deleted), a disk that filled (the part stays),
    the Hub's errors (hf_raise_for_status's, after RETRIES for a 5xx); Stopped when STOP is set."""
    blob = blob_path(cache, repo, file)
    if blob.is_file():
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    if file.xet:
        return _fetch_through_hub(cache, repo, commit, file, endpoint=endpoint, on_bytes=on_bytes)
    part = part_path(cache, repo, file)
    try:
        _fetch_part(part, cache, repo, commit, file, endpoint=endpoint, on_bytes=on_bytes, stop=stop)
    except BaseException:
        with contextlib.suppress(OSError):
            if part.stat().st_size == 0:  # stopped before its first byte: nothing to keep
                part.unlink()
        raise
    os.replace(part, blob)


def _fetch_part(part: Path, cache: Path, repo: str, commit: str, file: Remote, *, endpoint, on_bytes, stop) -> None:
    """FILE's bytes into PART (resumed from what it holds), checked: fetch's transfer."""
    address = url(endpoint, repo, commit, file.name)
    with open(part, "ab+") as fh:
        fh.seek(0)
        digest = digest_for(file)
        while chunk := fh.read(CHUNK):  # the part already here goes into the digest first
            digest.update(chunk)
        if fh.tell() > file.size:  # not this file's part: start over
            fh.truncate(0)
            fh.seek(0)
            digest = digest_for(file)
        fails = 0
        while (have := fh.tell()) < file.size:
            try:
                digest = _stream(address, fh, have, digest, lambda: digest_for(file), on_bytes, stop)
                fails = 0 if fh.tell() > have else fails + 1  # an answer that ended early, without an error
                if fails > RETRIES:
                    raise HubError(f"fetching {file.name}: the answers stopped at {have} of {file.size} bytes",
                                   status=ExitStatus.NO_NETWORK, hint="run the same command again later")
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise _disk_error(exc, file, cache) from None
                if not _worth_retrying(exc):
                    raise
                fails = _retry(exc, file, 0 if fh.tell() > have else fails)
            except (Stopped, HubError):
                raise
            except Exception as exc:  # noqa: BLE001 - a break worth resuming, or raised as it is
                if not _worth_retrying(exc):
                    raise
                fails = _retry(exc, file, 0 if fh.tell() > have else fails)
    if digest.hexdigest() != expected(file) or os.path.getsize(part) != file.size:
        part.unlink(missing_ok=True)
        raise _corrupt(file, repo)


def _retry(exc: BaseException, file: Remote, fails: int) -> int:
    """Wait before the next try after a break (FAILS tries running got nothing); give up after RETRIES."""
    if fails >= RETRIES:
        raise _gave_up(exc, file, fails) from None
    time.sleep(RETRY_WAIT * 2 ** fails)
    return fails + 1


def _stream(address: str, fh, have: int, digest, fresh, on_bytes, stop: threading.Event):
    """One GET from byte HAVE on, appended to FH and fed to DIGEST; the digest that holds the file's bytes
    after it (FRESH()'s when the server sent the whole file over). Breaks (a dropped connection, a 5xx) are
    raised to the caller, with what arrived before them written."""
    from huggingface_hub import get_session, hf_raise_for_status
    from huggingface_hub.utils import build_hf_headers

    if stop.is_set():
        raise Stopped
    headers = build_hf_headers()
    if have:
        headers["Range"] = f"bytes={have}-"
    with get_session().stream("GET", address, headers=headers, timeout=_timeout()) as response:
        hf_raise_for_status(response)
        if have and response.status_code == 200:
            # The server ignored the Range (olah's local mirror does): the file comes whole, from its start.
            fh.truncate(0)
            fh.seek(0)
            on_bytes(-have)
            digest = fresh()
        for chunk in response.iter_bytes():  # as they arrive: a chunk size would hold back what a break then loses
            if stop.is_set():
                raise Stopped
            fh.write(chunk)
            digest.update(chunk)
            on_bytes(len(chunk))
        fh.flush()
    return digest


def _timeout() -> float:
    from huggingface_hub import constants

    return constants.HF_HUB_DOWNLOAD_TIMEOUT


def _worth_retrying(exc: BaseException) -> bool:
    """A dropped connection, a timeout, or a 5xx: the Hub may answer the next try."""
    code = status_code(exc)
    return is_network_error(exc) or (code is not None and code >= 500)


def _gave_up(exc: BaseException, file: Remote, fails: int) -> HubError:
    code = status_code(exc)
    what = f"HTTP {code}" if code else first_line(exc)
    return HubError(f"fetching {file.name} failed {fails + 1} times running ({what}); what arrived is kept",
                    status=ExitStatus.NO_NETWORK,
                    hint="run the same command again later: it continues where this one stopped")


def _corrupt(file: Remote, repo: str) -> HubError:
    kind = "sha256" if file.sha256 else "git blob id"
    return Corrupt(f"{file.name} of {repo} arrived corrupt: its {kind} is not the Hub's ({expected(file)[:12]}...); "
                   "the file was deleted, nothing else was touched",
                   hint="run the same command again to fetch it anew; if it happens again, the mirror or a proxy "
                        "on the way (HF_ENDPOINT, HTTPS_PROXY) changes the bytes")


def _disk_error(exc: OSError, file: Remote, cache: Path) -> HubError:
    return HubError(f"the disk refused to write {file.name} ({os.strerror(exc.errno)}): the files that finished "
                    f"are in the cache ({cache}), this one's part is kept", status=ExitStatus.NO_SPACE,
                    hint="free some space and run the same command again (it continues), or move the cache to a "
                         "larger disk: export HF_HOME=/larger/disk/huggingface (r1 and vLLM both read it)")


def _fetch_through_hub(cache: Path, repo: str, commit: str, file: Remote, *, endpoint, on_bytes) -> None:
    """A Xet-backed file: hf_hub_download (hf_xet where installed), then its blob checked against the sha256."""
    from huggingface_hub import hf_hub_download

    class Meter:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int = 1) -> None:
            if n:
                on_bytes(n)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    hf_hub_download(repo, file.name, revision=commit, cache_dir=cache, endpoint=endpoint, tqdm_class=Meter)
    blob = blob_path(cache, repo, file)
    digest = digest_for(file)
    with open(blob, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected(file):
        (repo_folder(cache, repo) / "snapshots" / commit / file.name).unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise _corrupt(file, repo)
