"""What ships beside the code: shell completions that complete, a man page that renders, the entry points."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT, run_r1


def test_bash_completion_completes_commands():
    proc = subprocess.run([sys.executable, "-m", "r1cli"], capture_output=True, text=True,
                          env={**os.environ, "_R1_COMPLETE": "complete_bash", "COMP_WORDS": "r1 st", "COMP_CWORD": "1"})
    assert proc.stdout.split() == ["stop", "status"]


def test_completion_scripts_are_current():
    from typer._completion_shared import get_completion_script

    for shell in ("bash", "zsh", "fish"):
        script = get_completion_script(prog_name="r1", complete_var="_R1_COMPLETE", shell=shell)
        assert (ROOT / "completions" / f"r1.{shell}").read_text() == script.rstrip() + "\n"


def test_man_page_renders():
    """Rendered by groff as `man` renders it, never skipped: .ci/run installs groff (Debian's groff-base)."""
    groff = shutil.which("groff")
    assert groff, "groff is not installed: the man page cannot be rendered (apt-get install groff-base)"
    page = (ROOT / "man" / "r1.1").read_text()
    assert page.startswith(".TH R1 1")
    proc = subprocess.run([groff, "-man", "-Tutf8"], input=page, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no warning either
    plain = re.sub(".\x08", "", proc.stdout)  # drop the overstrike that draws bold
    assert "EXIT STATUS" in plain and "r1 serve demo -d" in plain.replace("\u2010", "-")


def test_version_and_module_entry_point():
    proc = run_r1("--version", check=True)
    assert proc.stdout.startswith("r1 ")
    assert shutil.which("r1", path=str(__import__("pathlib").Path(sys.executable).parent))


def test_unknown_command_is_exit_2_with_one_line():
    proc = run_r1("serv")
    assert proc.returncode == 2
    assert proc.stderr.startswith("r1: error: No such command 'serv'")
