"""Regenerate the parts of man/r1.1 and README.md that the Typer app declares: the synopsis, every command's
options (with their R1_* variables and defaults), the README's command, `r1 serve` flag and preset tables,
and the exit statuses. The prose around them stays hand-written; tests/test_docs.py fails on any difference.

    python tools/make_docs.py           # rewrite the generated blocks
    python tools/make_docs.py --check   # exit 1 and name the file when a block is out of date
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAN = ROOT / "man" / "r1.1"
BEGIN, END = "generated from the code by tools/make_docs.py: edit the code, then run it", "end of generated"


def app_command():
    from r1cli.cli import full_app

    return typer.main.get_command(full_app())


# typer 0.28 carries its own click: parameters are told apart by their kind, not their class.
def _options(command) -> list:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def _arguments(command) -> list:
    return [p for p in command.params if p.param_type_name == "argument"]


def _flag(option: object) -> str:
    """`--quant/-q`, `--warmup/--no-warmup`: the spellings as --help lists them."""
    names = sorted(option.opts, key=lambda o: (not o.startswith("--"), o))
    text = ", ".join(names)
    if option.secondary_opts:
        text += " / " + ", ".join(option.secondary_opts)
    return text


def _metavar(option: object) -> str | None:
    if option.is_flag:
        return None
    return option.metavar or option.type.name.upper()


def _default(option: object) -> str:
    if option.is_flag and option.secondary_opts:
        return "on" if option.default else "off"
    if option.is_flag:
        return "off"
    if option.default is None or option.show_default is False:
        found = re.search(r"\[default: ([^\]]+)\]", option.help or "")
        return found.group(1) if found else ""
    return str(option.default)


def _help(option: object) -> str:
    return re.sub(r"\s*\[default: [^\]]+\]", "", option.help or "").strip()


def _env(option: object) -> str:
    return option.envvar if isinstance(option.envvar, str) else ""


def _short_help(command: object) -> str:
    return (command.help or "").strip().split("\n\n")[0].replace("\n", " ")


def _argument(argument) -> str:
    """`[MODEL]`, `[FILE|-]`, `[DATASET]...`: as --help shows it."""
    name = argument.metavar or argument.name.upper()
    return name if name.startswith("[") or argument.required else f"[{name}]"


def usage(name: str, command: object) -> str:
    args = " ".join(_argument(a) for a in _arguments(command))
    return f"r1 {name}" + (f" {args}" if args else "")


# ----------------------------------------------------------------------------------------------- README
def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_commands(group: object) -> str:
    rows = ["| command | what it does |", "|---|---|"]
    for name, command in group.commands.items():
        rows.append(f"| `{_cell(usage(name, command))}` | {_cell(_short_help(command))} |")
    return "\n".join(rows)


def readme_serve_flags(group: object) -> str:
    rows = ["| flag | variable | default | what it does |", "|---|---|---|---|"]
    for option in _options(group.commands["serve"]):
        if option.name == "help":
            continue
        meta = _metavar(option)
        flag = f"`{_flag(option)}`" + (f" {meta}" if meta else "")
        env, default = _env(option), _default(option)
        rows.append(f"| {_cell(flag)} | {f'`{env}`' if env else ''} | {_cell(default)} | {_cell(_help(option))} |")
    return "\n".join(rows)


def readme_presets() -> str:
    from r1cli import config

    rows = ["| preset | model | `--quant awq` | `--quant gptq` |", "|---|---|---|---|"]
    for key, preset in config.PRESETS.items():
        cells = [f"`{c.repo}`" if (c := preset.checkpoint(f)) else "none known: refused" for f in config.QUANT_FAMILIES]
        rows.append(f"| `{key}` | `{preset.repo}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def readme_exit_statuses() -> str:
    from r1cli.errors import ExitStatus

    return "\n".join(["| status | meaning |", "|---|---|"] + [f"| {int(s)} | {s.detail} |" for s in ExitStatus])


# ----------------------------------------------------------------------------------------------- man page
def _roff(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")


def man_synopsis(group: object) -> str:
    lines = []
    for name, command in group.commands.items():
        args = " ".join(f"\\fI{_roff(_argument(a))}\\fR" for a in _arguments(command))
        lines += [f".B r1 {name}", (args + " " if args else "") + "[\\fIOPTIONS\\fR]", ".br"]
    return "\n".join(lines[:-1])


def man_options(group: object) -> str:
    lines = []
    for name, command in group.commands.items():
        lines.append(f".SS r1 {name}")
        lines.append(_roff(_short_help(command)))
        for option in _options(command):
            if option.name == "help":
                continue
            meta = _metavar(option)
            head = "\\fB" + _roff(_flag(option)) + "\\fR" + (f" \\fI{_roff(meta)}\\fR" if meta else "")
            extra = [f"default: {_default(option)}"] if _default(option) else []
            if _env(option):
                extra.append(f"variable: {_env(option)}")
            body = _help(option) + (f" ({'; '.join(extra)})" if extra else "")
            lines += [".TP", head, _roff(body)]
    return "\n".join(lines)


def man_exit_statuses() -> str:
    from r1cli.errors import ExitStatus

    return _roff("; ".join(f"{int(s)} {s.detail}" for s in ExitStatus).replace("`", "") + ".")


# ----------------------------------------------------------------------------------------------- blocks
def _replace_block(text: str, key: str, body: str, comment: tuple[str, str]) -> str:
    open_, close = comment
    start = f"{open_} {key}: {BEGIN} {close}".rstrip()
    end = f"{open_} {key}: {END} {close}".rstrip()
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no block '{key}' in the file: add the two marker lines\n{start}\n{end}")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def rendered() -> dict[Path, str]:
    group = app_command()
    readme = README.read_text()
    md = ("<!--", "-->")
    readme = _replace_block(readme, "commands", readme_commands(group), md)
    readme = _replace_block(readme, "serve flags", readme_serve_flags(group), md)
    readme = _replace_block(readme, "exit statuses", readme_exit_statuses(), md)
    readme = _replace_block(readme, "presets", readme_presets(), md)
    man = MAN.read_text()
    roff = ('.\\"', "")
    man = _replace_block(man, "synopsis", man_synopsis(group), roff)
    man = _replace_block(man, "options", man_options(group), roff)
    man = _replace_block(man, "exit statuses", man_exit_statuses(), roff)
    return {README: readme, MAN: man}


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered().items() if path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.name} is out of date: run python tools/make_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
