"""The man page and the README say what the code declares: their generated blocks (synopsis, every command's
options, the command and `r1 serve` flag tables, the exit statuses) match the Typer app, and the prose names
no command or flag the app does not have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_docs  # noqa: E402


def test_generated_blocks_match_the_app():
    stale = [path.name for path, text in make_docs.rendered().items() if path.read_text() != text]
    assert stale == [], f"out of date: {stale}; run python tools/make_docs.py"


def test_check_mode_fails_on_a_difference(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(make_docs.README.read_text().replace("| `r1 stop` |", "| `r1 halt` |"))
    monkeypatch.setattr(make_docs, "README", readme)
    assert make_docs.main(["--check"]) == 1


def test_every_command_and_flag_the_docs_show_exists():
    """Each `r1 NAME ...` the README shows in code, and each `.B r1 NAME` of the man page, is a command, and
    each --flag in such a README snippet is one of that command's."""
    from r1cli.cli import full_app

    group = typer.main.get_command(full_app())
    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "man" / "r1.1").read_text().replace("\\-", "-")
    shown = re.findall(r"`r1 ([a-z]+)([^`]*)`", readme) + [(n, "") for n in re.findall(r"^\.B r1 ([a-z]+)", man, re.M)]
    assert len(shown) > 20
    for name, rest in shown:
        assert name in group.commands, f"r1 {name}{rest}"
        command = group.commands[name]
        flags = {o for p in command.params for o in p.opts + p.secondary_opts} | {"--help"}
        before_passthrough = rest.split(" -- ", 1)[0]
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", before_passthrough):
            assert flag in flags, f"r1 {name}{rest}: {flag}"


def test_the_man_page_renders_each_command_section():
    groff = subprocess.run(["groff", "-man", "-Tutf8"], input=(ROOT / "man" / "r1.1").read_text(),
                           capture_output=True, text=True, check=False)
    for name in ("serve", "stop", "logs", "ask", "chat", "status", "eval", "bench", "doctor"):
        assert f"r1 {name}" in re.sub(r".\x08", "", groff.stdout), name
