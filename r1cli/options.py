"""Options that several commands share, declared once: each command module takes these as its parameters'
types, so a flag means the same thing, spells the same way and says the same in --help, the man page
and the completions everywhere it appears. Only typer and the rule modules are imported here (start-up)."""


from typing import Annotated, Optional

import typer

from r1cli import completion, config, rules
from r1cli.evaluation import sets

# ------------------------------------------------------------------------------------------ which server
PORT_RANGE = {"min": 1, "max": 65535}  # every --port: a port nothing can use is bad input (exit 2), not "no server"
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", envvar="R1_BASE_URL",
                                                help="OpenAI base URL (default: the running r1 server, else http://127.0.0.1:8000/v1, named on stderr).")]
# The client commands' --port (ask, chat, eval, bench, status): the server at 127.0.0.1:PORT, the same port
# that serve's --port listens on and stop's and logs' --port name. No R1_PORT here: that one is serve's.
Port = Annotated[Optional[int], typer.Option("--port", **PORT_RANGE, show_default=False,
                                             help="The server at 127.0.0.1:PORT (short for --base-url http://127.0.0.1:PORT/v1; wins over R1_BASE_URL).")]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="R1_API_KEY", help="Bearer key for the server.")]
Model = Annotated[Optional[str], typer.Option("--model", "-m", envvar="R1_MODEL", help="Served model name (default: the server's first).")]
# The server commands' --port: which r1 server (serve's own --port is where to listen).
ServerPort = Annotated[Optional[int], typer.Option("--port", envvar="R1_PORT", **PORT_RANGE, help="The server's port (default: the only one running).")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]

# ------------------------------------------------------------------------------------------ sampling
System = Annotated[Optional[str], typer.Option("--system", help="Instructions; folded into the first user message (R1 takes no system prompt).")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", envvar="R1_TEMPERATURE", min=0.0, max=2.0,
                                            help="DeepSeek recommends 0.5-0.7.")]
TopP = Annotated[float, typer.Option("--top-p", envvar="R1_TOP_P", min=0.0, max=1.0,
                                     help="0.95 as in DeepSeek's evaluation (the article's 0.9 is not theirs).")]
# Not R1_TIMEOUT: that one is serve's readiness deadline (minutes), this one a read timeout.
RequestTimeout = Annotated[float, typer.Option("--timeout", envvar="R1_REQUEST_TIMEOUT", min=0.1,
                                               help="Seconds to wait for data from the server.")]
MaxTokens = Annotated[Optional[int], typer.Option("--max-tokens", envvar="R1_MAX_TOKENS", min=1,
                                                  help="Cap on generated tokens (default: the rest of the context window).")]
ThinkBudget = Annotated[Optional[int], typer.Option("--think-budget", envvar="R1_THINK_BUDGET", min=1,
                                                    help="Reasoning tokens allowed; then r1 closes the reasoning and has the model answer from it.")]
# The defaults themselves are rules.py's (DeepSeek's recommendation), read by every command from there.
DEFAULT_TEMPERATURE = rules.DEFAULT_TEMPERATURE
DEFAULT_TOP_P = rules.DEFAULT_TOP_P

# ------------------------------------------------------------------------------------------ serving
ModelArg = Annotated[str, typer.Argument(help="Hugging Face id, local path, or a preset: " + " ".join([*config.PRESETS, "demo"])
                                         + ".", envvar="R1_MODEL_PATH", autocompletion=completion.models)]
Quant = Annotated[Optional[str], typer.Option("--quant", "-q", envvar="R1_QUANT", autocompletion=completion.quants,
                                              help=", ".join(config.QUANT_CHOICES[:-1]) + " or "
                                              + config.QUANT_CHOICES[-1] + " (vLLM --quantization).")]
# None = not given: the demo's defaults then apply, never over a flag the user gave.
GpuMem = Annotated[Optional[float], typer.Option("--gpu-mem", envvar="R1_GPU_MEM", show_default=False,
                                                 help=f"Fraction of GPU memory for vLLM (on CPU: of RAM) [default: {config.DEFAULT_GPU_MEM}; demo: 0.3].")]

# ------------------------------------------------------------------------------------------ measuring
# eval and bench take these as arguments: both list the names from the one table (evaluation/sets.py).
DATASETS_TEXT = sets.names_text()
# One meaning for each name of the measuring commands (issue 24): --out is a folder in eval and in bench,
# -n is no count here (it is `r1 logs -n`, as in tail), -d is serve's --detach alone.


def out_folder(what: str) -> typer.Option:
    """--out, -o: the folder a measuring command writes its files to (eval and bench)."""
    return typer.Option("--out", "-o", metavar="DIR", help=f"Folder for the results: {what}.")

