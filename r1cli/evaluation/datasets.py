"""Evaluation sets: the shipped `demo` set, public sets from the Hugging Face Hub at pinned revisions,
and files (JSONL, JSON, CSV, Parquet) with their fields detected.

`load_dataset(name_or_path)` gives the problems; `open_dataset` gives them with provenance (source,
revision, sha256 of the bytes read). Nothing heavy at import time: huggingface_hub and pyarrow are
imported by the code that needs them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from r1cli.answers import last_boxed
from r1cli.errors import UsageError
from r1cli.evaluation.sets import BUILTIN, HUB_SETS, HubSet, names_text  # noqa: F401  (the table lives there)

__all__ = ["BadRow", "Dataset", "HUB_SETS", "HubSet", "Problem", "gsm8k_reference", "load_dataset",
           "open_dataset", "parse_field_map", "reference_text"]

# Field names looked for, in order; --field-map overrides them.
QUESTION_FIELDS = ("problem", "question", "prompt", "Problem", "Question")
ANSWER_FIELDS = ("answer", "final_answer", "Answer")
SOLUTION_FIELDS = ("solution", "Solution")
ID_FIELDS = ("id", "unique_id", "idx", "ID")

EVAL_EXTRA = "pip install 'r1cli[eval]'  (huggingface_hub and pyarrow)"


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    reference: str




@dataclass
class BadRow:
    """A row left out (with --skip-bad): where it was and why."""

    where: str  # "line 7" (JSONL) or "row 7"
    why: str


@dataclass
class Dataset:
    name: str  # "demo", "aime24", or the file's path as given
    problems: list[Problem]
    source: str  # "builtin", "hub:REPO/FILE", or "file"
    path: str | None  # the file read (a hub set's cached copy)
    revision: str | None  # the hub commit; the r1 version for the builtin set
    sha256: str  # of the bytes read
    skipped: list[BadRow] = field(default_factory=list)

    def provenance(self) -> dict:
        return {"name": self.name, "source": self.source, "path": self.path, "revision": self.revision,
                "sha256": self.sha256, "problems": len(self.problems),
                "skipped_rows": [f"{b.where}: {b.why}" for b in self.skipped]}


def load_dataset(name_or_path: str | Path, *, field_map: dict[str, str] | None = None, skip_bad: bool = False,
                 limit: int | None = None) -> list[Problem]:
    """The problems of a named set (`demo`, `aime24`, `math500`, `gsm8k`, `amc23`) or a file.

    Raises UsageError (exit 2) for an unknown name, an unreadable file, a malformed row (one line
    with its number; ``skip_bad`` leaves such rows out), or a hub set that is neither cached nor
    reachable.
    """
    return open_dataset(name_or_path, field_map=field_map, skip_bad=skip_bad, limit=limit).problems


def open_dataset(name_or_path: str | Path, *, field_map: dict[str, str] | None = None, skip_bad: bool = False,
                 limit: int | None = None) -> Dataset:
    """Like load_dataset, with where the problems came from (for a report's provenance)."""
    spec = str(name_or_path)
    key = spec.lower()
    if key == "demo" and not Path(spec).exists():
        from r1cli import __version__, config

        path = config.demo_model_dir() / "questions.json"
        data = path.read_bytes()
        problems, skipped = parse_rows(_rows(path, data), field_map=field_map, skip_bad=skip_bad, label="demo")
        ds = Dataset("demo", problems, "builtin", str(path), __version__, _sha256(data), skipped)
    elif key in HUB_SETS and not Path(spec).exists():
        hub = HUB_SETS[key]
        path = Path(fetch_hub_file(key, hub))
        data = path.read_bytes()
        problems, skipped = parse_rows(_rows(path, data), field_map=field_map, skip_bad=skip_bad, label=key)
        ds = Dataset(key, problems, f"hub:{hub.repo}/{hub.filename}", str(path), hub.revision, _sha256(data),
                     skipped)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            names = names_text()
            raise UsageError(f"no dataset named {spec!r} and no such file",
                             hint=f"give a file (JSONL, JSON, CSV, Parquet) or one of: {names}")
        if path.is_dir():
            raise UsageError(f"{spec} is a folder; give a dataset file (JSONL, JSON, CSV or Parquet)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {spec}: {exc.strerror or exc}") from None
        problems, skipped = parse_rows(_rows(path, data), field_map=field_map, skip_bad=skip_bad, label=spec)
        ds = Dataset(spec, problems, "file", str(path.resolve()), None, _sha256(data), skipped)
    if not ds.problems:
        raise UsageError(f"{ds.name} holds no problems")
    if limit is not None:
        ds.problems = ds.problems[:limit]
    return ds


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# The Hub


def fetch_hub_file(name: str, hub: HubSet) -> str:
    """The local path of a hub set's file: the cache when it holds the pinned revision, else a download.

    Offline (HF_HUB_OFFLINE=1, or the Hub's host not answering within 3 s) and not cached is one
    UsageError at once, not huggingface_hub's minute of retries.
    """
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # vLLM depends on it; a client-only install may lack it
        raise UsageError(f"{name} comes from the Hugging Face Hub, and huggingface_hub is not installed",
                         hint=EVAL_EXTRA) from None
    cached = try_to_load_from_cache(hub.repo, hub.filename, revision=hub.revision, repo_type="dataset")
    if isinstance(cached, str):
        return cached
    where = f"{hub.repo}@{hub.revision[:7]}"
    offline = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else _unreachable(constants.ENDPOINT)
    if offline:
        raise UsageError(f"{name} ({where}) is not in the Hugging Face cache and the Hub cannot be reached "
                         f"({offline})",
                         hint=f"run `r1 eval {name}` once where the Hub is reachable (it is cached in HF_HOME), "
                              "or pass the set as a file")
    from r1cli.hub.pull import first_line, is_network_error

    try:
        # One HEAD first, with the metadata timeout (HF_HUB_ETAG_TIMEOUT) and no retry: after a failed HEAD,
        # hf_hub_download tries five more times with back-off (a Hub that took connections and never
        # answered held `r1 eval aime24` for 397 s, then blamed the dataset).
        get_hf_file_metadata(hf_hub_url(hub.repo, hub.filename, repo_type="dataset", revision=hub.revision))
        return hf_hub_download(hub.repo, hub.filename, repo_type="dataset", revision=hub.revision)
    except LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: the Hub was not reached
        raise _not_downloaded(name, where, first_line(exc), constants.ENDPOINT) from None
    except (EntryNotFoundError, RepositoryNotFoundError) as exc:
        raise UsageError(f"{name}: {where} has no {hub.filename} ({exc.__class__.__name__})",
                         hint="pass the set as a file") from None
    except Exception as exc:  # noqa: BLE001 - the HTTP client's transport errors, by name; others go on up
        if not (is_network_error(exc) or isinstance(exc, OSError)):
            raise
        raise _not_downloaded(name, where, first_line(exc), constants.ENDPOINT) from None


def _not_downloaded(name: str, where: str, reason: str, endpoint: str) -> UsageError:
    return UsageError(f"{name} ({where}) could not be downloaded from the Hub ({endpoint}): {reason}",
                      hint="check the network (a proxy: HTTPS_PROXY) or HF_ENDPOINT, or pass the set as a file")


def _unreachable(endpoint: str) -> str | None:
    """Why the Hub's host takes no TCP connection within 3 s, or None when it does."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=3):
            return None
    except OSError as exc:
        return f"{url.hostname}: {exc.strerror or exc.__class__.__name__}"


# ---------------------------------------------------------------------------------------------
# Files -> rows


def _rows(path: Path, data: bytes) -> Iterator[tuple[str, Any]]:
    """(where, row) for each record: "line N" in JSONL, "row N" elsewhere. A row may be an error
    string (a line that is not JSON), which parse_rows reports."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        raise UsageError(f"{path.name}: compressed files are not read; decompress it first (gunzip)")
    if suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    text = _decode(path, data)
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(text)
    elif suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            # A .json file that is really JSON Lines is common: try that before giving up.
            if text.lstrip().startswith("{") and "\n{" in text:
                yield from _jsonl_rows(text)
                return
            raise UsageError(f"{path.name}: not valid JSON ({exc})") from None
        records = doc
        if isinstance(doc, dict):  # {"data": [...]} or {"test": [...]}: the one list inside
            lists = [v for v in doc.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise UsageError(f"{path.name}: expected a list of objects (or an object holding one list)")
            records = lists[0]
        if not isinstance(records, list):
            raise UsageError(f"{path.name}: expected a list of objects")
        for i, rec in enumerate(records, 1):
            yield f"row {i}", rec
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        for i, rec in enumerate(reader, 1):
            if None in rec:  # more cells than header fields
                yield f"row {i}", f"{len(rec) - 1 + len(rec[None])} cells for {len(rec) - 1} header fields"
            else:
                yield f"row {i}", rec
    else:
        raise UsageError(f"{path.name}: unknown format {suffix or '(no extension)'}",
                         hint="use .jsonl, .json, .csv, .tsv or .parquet")


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path.name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                         hint="convert it first, e.g. iconv -f latin1 -t utf-8") from None


def _jsonl_rows(text: str) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line)
        except ValueError as exc:
            yield f"line {n}", f"not valid JSON ({exc})"


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path.name}: reading Parquet needs pyarrow, which is not installed",
                         hint=EVAL_EXTRA) from None
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UsageError(f"{path.name}: not a readable Parquet file ({exc})") from None
    for i, rec in enumerate(records, 1):
        yield f"row {i}", rec


# ---------------------------------------------------------------------------------------------
# Rows -> problems


def parse_field_map(spec: str | None) -> dict[str, str]:
    """``question=text,answer=label,id=key`` -> {"question": "text", ...}."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or role not in ("question", "answer", "id") or not column:
            raise UsageError(f"--field-map: bad entry {part!r}",
                             hint="e.g. --field-map question=text,answer=label (roles: question, answer, id)")
        out[role] = column
    return out


class FieldError(ValueError):
    """A row without the question or reference field r1 looks for: --field-map names other columns."""

    def __init__(self, message: str, columns: str):
        super().__init__(message)
        self.columns = columns


FIELD_MAP_HINT = "name its columns: --field-map question=COL,answer=COL (its columns: {columns})"


def parse_rows(rows, *, field_map: dict[str, str] | None = None, skip_bad: bool = False,
               label: str = "dataset") -> tuple[list[Problem], list[BadRow]]:
    """Problems from (where, record) pairs. A bad record raises a UsageError naming it, or is skipped."""
    field_map = field_map or {}
    problems: list[Problem] = []
    skipped: list[BadRow] = []
    seen: set[str] = set()
    columns = None  # of the last row whose fields were not found
    for n, (where, rec) in enumerate(rows, 1):
        try:
            problem = _problem(rec, n, field_map)
            if problem.id in seen:
                raise ValueError(f"id {problem.id!r} repeats an earlier row's")
        except FieldError as exc:  # the file's columns have other names: --skip-bad would leave every row out
            if not skip_bad:
                # On the first row it is the file's column names (--skip-bad would leave every row out);
                # after good rows, this row lacks a field.
                hint = (FIELD_MAP_HINT.format(columns=exc.columns) if not problems
                        else "fix the row, or pass --skip-bad to leave bad rows out")
                raise UsageError(f"{label}: {where}: {exc}", hint=hint) from None
            columns = exc.columns
            skipped.append(BadRow(where, str(exc)))
            continue
        except ValueError as exc:
            if not skip_bad:
                raise UsageError(f"{label}: {where}: {exc}",
                                 hint="fix the row, or pass --skip-bad to leave bad rows out") from None
            skipped.append(BadRow(where, str(exc)))
            continue
        seen.add(problem.id)
        problems.append(problem)
    if skip_bad and skipped and not problems:
        first = skipped[0]
        raise UsageError(f"{label}: --skip-bad left out every row ({len(skipped)}; {first.where}: {first.why})",
                         hint=FIELD_MAP_HINT.format(columns=columns) if columns else "fix the rows")
    return problems, skipped


def _problem(rec: Any, n: int, field_map: dict[str, str]) -> Problem:
    if isinstance(rec, str):  # an unparsable line, already described
        raise ValueError(rec)
    if not isinstance(rec, dict):
        raise ValueError(f"expected an object with a question and an answer, got {type(rec).__name__}")
    keys = ", ".join(map(str, list(rec)[:8])) or "none"

    question_field = field_map.get("question") or next((f for f in QUESTION_FIELDS if f in rec), None)
    if question_field is None or question_field not in rec:
        wanted = field_map.get("question") or "/".join(QUESTION_FIELDS[:3])
        raise FieldError(f"no question field ({wanted}); its fields are: {keys}", keys)
    question = rec[question_field]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"the question ({question_field}) is empty")

    if "answer" in field_map:
        if field_map["answer"] not in rec:
            raise FieldError(f"no answer field {field_map['answer']!r}; its fields are: {keys}", keys)
        reference = reference_text(rec[field_map["answer"]])
    else:
        reference = None
        for f in ANSWER_FIELDS:
            if f in rec and reference_text(rec[f]):
                reference = reference_text(rec[f])
                break
        if reference is None:
            for f in SOLUTION_FIELDS:
                if isinstance(rec.get(f), str):
                    reference = last_boxed(rec[f]) or gsm8k_reference(rec[f])
                    if reference:
                        break
    if not reference:
        raise FieldError(f"no reference answer (answer/final_answer, or a solution with \\boxed{{}}); "
                         f"its fields are: {keys}", keys)

    id_field = field_map.get("id") or next((f for f in ID_FIELDS if f in rec), None)
    raw_id = rec.get(id_field) if id_field else None
    pid = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else str(n)
    return Problem(pid, question.strip(), reference)


_GSM8K_MARK = "####"
_THOUSANDS = re.compile(r"^([-+]?)\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?$")


def gsm8k_reference(text: str) -> str | None:
    """The final answer of a GSM8K worked solution: what follows the last ``####``, with thousands
    separators and a dollar sign removed (``#### 1,234`` -> ``1234``). None without a ``####``."""
    if not isinstance(text, str) or _GSM8K_MARK not in text:
        return None
    answer = text.rsplit(_GSM8K_MARK, 1)[1].strip()
    m = _THOUSANDS.match(answer)
    if m:
        answer = m.group(1) + m.group(2).replace(",", "") + (m.group(3) or "")
    return answer or None


def reference_text(value: Any) -> str:
    """A reference answer as text: numbers without a spurious ``.0`` (27.0 -> "27"), a GSM8K worked
    solution reduced to its ``####`` answer, strings stripped; "" for nothing usable."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)) and len(value) == 1:  # some sets wrap the answer in a list
        return reference_text(value[0])
    if not isinstance(value, str):
        return ""
    return gsm8k_reference(value) or value.strip()
