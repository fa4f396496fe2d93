"""Regenerate completions/ from the Typer app (run after changing commands or options)."""

from pathlib import Path

from typer._completion_shared import get_completion_script

OUT = Path(__file__).resolve().parents[1] / "completions"
for shell in ("bash", "zsh", "fish"):
    script = get_completion_script(prog_name="r1", complete_var="_R1_COMPLETE", shell=shell)
    (OUT / f"r1.{shell}").write_text(script.rstrip() + "\n")
