"""What ships beside the code: shell completions that complete, a man page that renders, the entry points."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
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


def readme_block(after: str) -> list[str]:
    """The commands of the README's first ```sh block after the line AFTER (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(after):].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


MAN_AND_COMPLETION = "After the quick start's install (a checkout, `.venv`, `pip install -e`):"


@pytest.mark.timeout(120)
def test_the_readme_says_how_to_get_the_man_page_and_completion_after_its_install(tmp_path):
    """Issue 32, items 9 and 10: after the README's editable install `man r1` had no entry (though README and
    pyproject said it was installed), and completion registered for `r1` while the README runs `.venv/bin/r1`.
    The README's own block, run as written from the checkout: the man page renders, and after activating
    the venv `r1 --install-completion` gives a bash that completes `r1 st` (a HOME of the test's own)."""
    man = shutil.which("man")
    assert man, "man is not installed (apt-get install man-db)"
    assert readme_block(MAN_AND_COMPLETION) == ["man -l man/r1.1", ". .venv/bin/activate", "r1 --install-completion"]
    env = {**os.environ, "HOME": str(tmp_path), "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100",
           "SHELL": "/bin/bash"}
    page = subprocess.run(["bash", "-c", "man -l man/r1.1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert page.returncode == 0 and "EXIT STATUS" in re.sub(".\x08", "", page.stdout), page.stderr
    venv = Path(sys.prefix)
    # typer finds the shell among r1's parents (shellingham): `; exit $?` keeps bash from exec'ing r1 in its place,
    # as a user's interactive shell never does (a run under bash -c otherwise found no shell: "Shell None")
    installed = subprocess.run(["bash", "-c", f". {venv}/bin/activate && r1 --install-completion; exit $?"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    # a new interactive bash reads the startup file; the completion function is called as bash calls it
    completed = subprocess.run(["bash", "-i", "-c", "COMP_WORDS=(r1 st); COMP_CWORD=1; _r1_completion r1; "
                                                    "echo \"${COMPREPLY[*]}\""],
                               cwd=ROOT, env={**env, "PATH": f"{venv}/bin:{env['PATH']}"}, capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert completed.stdout.split() == ["stop", "status"], completed.stderr
    # bash's script also serves the path the README types (`.venv/bin/r1`): it calls the command as typed
    typed = subprocess.run(["bash", "-c", f"source completions/r1.bash; COMP_WORDS=({venv}/bin/r1 st); COMP_CWORD=1; "
                                          f"_r1_completion {venv}/bin/r1; echo \"${{COMPREPLY[*]}}\""],
                           cwd=ROOT, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert typed.stdout.split() == ["stop", "status"], typed.stderr
    # and the reason the README gives: an editable install has no man page of its own
    # the venv's own record of the install (the checkout's r1cli.egg-info, first on sys.path from ROOT, has none)
    installed_dist = next(metadata.distributions(name="r1cli", path=[sysconfig.get_paths()["purelib"]]))
    direct = json.loads(installed_dist.read_text("direct_url.json"))
    if direct.get("dir_info", {}).get("editable"):
        assert not (venv / "share" / "man" / "man1" / "r1.1").exists(), "the editable install has the man page now: say so"


@pytest.mark.timeout(180)
def test_man_r1_finds_the_page_of_a_regular_install(tmp_path):
    """What the README promises for `pip install .`: a wheel built from a copy of what the build reads (so no
    stale build/ of the checkout slips in), installed into a venv of its own (pip --python: a `pip install
    --prefix` from this venv would uninstall this venv's r1cli first); with its bin on PATH, `man r1` finds and
    renders the page."""
    source = tmp_path / "src"
    for name in ("r1cli", "man"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = (tmp_path / "wheel").glob("r1cli-*.whl")
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=60)
    subprocess.run([*pip, "--python", str(prefix / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env.update(PATH=f"{prefix}/bin:/usr/bin:/bin", MANPAGER="cat", PAGER="cat", MANWIDTH="100")
    where = subprocess.run(["man", "-w", "r1"], env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(prefix / "share" / "man" / "man1" / "r1.1"), where.stderr
    page = subprocess.run(["man", "r1"], env=env, capture_output=True, text=True, timeout=60)
    assert page.returncode == 0 and "EXIT STATUS" in re.sub(".\x08", "", page.stdout), page.stderr
