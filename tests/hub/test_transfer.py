"""A pull's transfers against olah through the counting relay (conftest.py), with the faults a network and a
disk produce: a connection dropped mid-file, a 5xx, a disk that refuses to write, a corrupt byte. And the one
place r1 relies on huggingface_hub's cache layout rather than a function of it (hub/transfer.py): what r1
writes, huggingface_hub's own functions find."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from hub.conftest import DEMO, REPO
from hub.helpers import ROOT, r1
from hub.test_pull import WANTED, WEIGHTS, assert_pulled_whole, one_error_line
from r1cli.errors import ExitStatus
from r1cli.hub import transfer

pytestmark = pytest.mark.timeout(120)

CUT = 1_000_000  # bytes of the weights served before the relay's fault


WEIGHTS_ETAG = hashlib.sha1(b"blob %d\0" % WEIGHTS.stat().st_size + WEIGHTS.read_bytes()).hexdigest()  # git's blob id


def part_of_the_weights(cache):
    """The size of the weights' .incomplete part (None: none). A failure stops the other transfers too: theirs
    may stay beside it, for the next pull to go on from."""
    part = cache / "models--r1test--demo" / "blobs" / f"{WEIGHTS_ETAG}.incomplete"
    return part.stat().st_size if part.exists() else None


def test_a_connection_dropped_mid_file_is_resumed_without_fetching_a_byte_twice(hub_env, mirror):
    mirror.relay.fault_file, mirror.relay.faults = "model.safetensors", [("cut", CUT)]
    status, _, err = r1("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    first, second = mirror.relay.resolve_requests("model.safetensors")
    assert "range:" not in first and f"range: bytes={CUT}-" in second  # the rest only
    small = sum((DEMO / n).stat().st_size for n in WANTED) - WEIGHTS.stat().st_size
    assert mirror.relay.served < WEIGHTS.stat().st_size + small + 20_000  # heads only beyond the files' bytes


def test_a_5xx_mid_file_is_retried_then_a_clear_error_that_keeps_what_arrived(hub_env, mirror):
    mirror.relay.fault_file = "model.safetensors"
    mirror.relay.faults = [("cut", CUT), ("status", 503)]  # one 503, then the rest: retried, done
    status, _, err = r1("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    assert len(mirror.relay.resolve_requests("model.safetensors")) == 3

    status, _, err = r1("rm", REPO, "--yes")
    assert status == 0, err
    mirror.relay.reset()
    mirror.relay.faults = [("cut", CUT)] + [("status", 503)] * (transfer.RETRIES + 1)
    status, _, err = r1("pull", REPO)
    assert status == ExitStatus.NO_NETWORK, err
    line = one_error_line(err)
    assert f"fetching model.safetensors failed {transfer.RETRIES + 1} times running (HTTP 503)" in line
    assert "what arrived is kept" in line and "again later" in err
    assert len(mirror.relay.resolve_requests("model.safetensors")) == transfer.RETRIES + 1  # the cut, then the 503s
    assert part_of_the_weights(hub_env) == CUT
    status, _, err = r1("pull", REPO)  # the next pull goes on from the cut
    assert status == 0, err
    assert_pulled_whole(hub_env)
    assert f"range: bytes={CUT}-" in mirror.relay.resolve_requests("model.safetensors")[-1]


def test_a_disk_that_fills_is_a_clear_error_and_the_finished_files_stay_valid(hub_env, mirror):
    """The disk filling, as the kernel refuses a write: here the file-size limit (RLIMIT_FSIZE, EFBIG), which
    needs no small filesystem of its own; r1 takes ENOSPC, EDQUOT and EFBIG alike."""
    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (CUT, CUT))

    proc = subprocess.run([sys.executable, "-m", "r1cli", "pull", REPO], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=limited, timeout=100)
    assert proc.returncode == ExitStatus.NO_SPACE, proc.stderr
    line = one_error_line(proc.stderr)
    assert "the disk refused to write model.safetensors" in line and "files that finished are in the cache" in line
    assert "free some space" in proc.stderr
    # The files that finished (those the failure did not stop first) are whole and linked; the weights are a
    # part only, config.json (last) not there.
    snapshots = list((hub_env / "models--r1test--demo" / "snapshots").glob("*/*"))
    done = {p.name: p for p in snapshots}
    assert set(done) <= WANTED - {"model.safetensors", "config.json"}
    for name, path in done.items():
        assert path.read_bytes() == (DEMO / name).read_bytes()
    assert part_of_the_weights(hub_env) == CUT
    assert json.loads(r1("models", "--json")[1]) == []  # not servable, so not listed
    mirror.relay.reset()
    status, _, err = r1("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)
    assert f"range: bytes={CUT}-" in mirror.relay.resolve_requests("model.safetensors")[0]


def test_a_corrupt_byte_is_caught_before_it_becomes_a_blob(hub_env, mirror):
    """olah serves the mirror's files from git, not LFS: their digest is the git blob id the tree lists (an LFS
    file's is its sha256: the same check, transfer.digest_for)."""
    mirror.relay.fault_file, mirror.relay.faults = "model.safetensors", [("corrupt", 123_456)]
    status, _, err = r1("pull", REPO)
    assert status == ExitStatus.ERROR, err
    line = one_error_line(err)
    assert "model.safetensors of r1test/demo arrived corrupt: its git blob id is not the Hub's" in line
    assert part_of_the_weights(hub_env) is None  # the bad bytes are gone
    assert not (hub_env / "models--r1test--demo" / "blobs" / WEIGHTS_ETAG).exists()
    status, _, err = r1("pull", REPO)
    assert status == 0, err
    assert_pulled_whole(hub_env)


def test_the_digest_is_the_lfs_sha256_or_the_git_blob_id():
    import hashlib

    data = b"weights"
    lfs = transfer.Remote("w.safetensors", len(data), hashlib.sha256(data).hexdigest(), hashlib.sha256(data).hexdigest())
    git = transfer.Remote("config.json", len(data), hashlib.sha1(b"blob 7\0" + data).hexdigest())
    for file in (lfs, git):
        digest = transfer.digest_for(file)
        digest.update(data)
        assert digest.hexdigest() == transfer.expected(file)


# ------------------------------------------------------------------------------------------ the adapter
def test_huggingface_hub_finds_what_r1_pulled(hub_env, mirror):
    """transfer.link lays out blobs and snapshot links as huggingface_hub does: its own lookups, offline, find
    every file, and its cache scan sees one clean revision at main. Fails when huggingface_hub changes its layout."""
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache

    status, out, err = r1("pull", REPO)
    assert status == 0, err
    snapshot = out.strip()
    for name in WANTED:
        assert try_to_load_from_cache(REPO, name, cache_dir=hub_env) == os.path.join(snapshot, name)
        assert hf_hub_download(REPO, name, cache_dir=hub_env, local_files_only=True) == os.path.join(snapshot, name)
    assert snapshot_download(REPO, cache_dir=hub_env, local_files_only=True) == snapshot
    info = scan_cache_dir(hub_env)
    assert not info.warnings
    (repo,) = info.repos
    (revision,) = repo.revisions
    assert revision.refs == frozenset({"main"}) and {f.file_name for f in revision.files} == WANTED


def test_a_xet_backed_file_goes_through_hf_hub_download_and_is_checked_after(hub_env, mirror):
    """A file the tree lists with a xet hash is fetched by hf_hub_download (hf_xet where the Hub serves Xet;
    olah does not, so huggingface_hub falls back to HTTP here), its bytes counted, then its blob checked."""
    import threading

    status, out, err = r1("pull", REPO, "--dry-run", "--json")
    assert status == 0, err
    plan = json.loads(out)
    listed = next(f for f in plan["files"] if f["name"] == "model.safetensors")
    file = transfer.Remote(listed["name"], listed["size"], listed["etag"], xet=True)
    counted = []
    transfer.fetch(hub_env, REPO, plan["commit"], file, endpoint=mirror.endpoint, on_bytes=counted.append,
                   stop=threading.Event())
    assert transfer.blob_path(hub_env, REPO, file).read_bytes() == WEIGHTS.read_bytes()
    assert sum(counted) == WEIGHTS.stat().st_size

    transfer.blob_path(hub_env, REPO, file).unlink()
    wrong = transfer.Remote(listed["name"], listed["size"], listed["etag"], sha256="0" * 64, xet=True)
    with pytest.raises(transfer.Corrupt, match="model.safetensors of r1test/demo arrived corrupt: its sha256"):
        transfer.fetch(hub_env, REPO, plan["commit"], wrong, endpoint=mirror.endpoint, on_bytes=counted.append,
                       stop=threading.Event())
    assert not transfer.blob_path(hub_env, REPO, wrong).exists()
    assert not (hub_env / "models--r1test--demo" / "snapshots" / plan["commit"] / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------ parallel
def test_files_are_fetched_at_once_and_workers_bounds_them(hub_env, mirror):
    """The relay holds each file's GET until six are open, or 2 s have passed (config.json, read alone to plan
    the pull, waits them out; six files are left): the pull's six GETs are seen open together."""
    mirror.relay.gather = (6, 2.0)
    status, _, err = r1("pull", REPO)
    assert status == 0, err
    assert mirror.relay.most_open == 6
    assert_pulled_whole(hub_env)

    status, _, err = r1("rm", REPO, "--yes")
    assert status == 0, err
    mirror.relay.reset()
    mirror.relay.gather = (2, 0.3)  # each GET waits 0.3 s for a second that --workers 1 never opens
    status, _, err = r1("pull", REPO, "--workers", "1")
    assert status == 0, err
    assert mirror.relay.most_open == 1
    assert_pulled_whole(hub_env)
