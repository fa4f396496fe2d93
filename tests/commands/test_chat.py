"""The pure parts of `r1 chat`: slash commands, settings, multi-line input, conversation state and the
rules applied per turn; and the renderer's bookkeeping (cursor rows, sanitising, views)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings, strategies as st

from r1cli import render, rules
from r1cli.commands import chat, chat_slash
from r1cli.client import transcript
from r1cli.commands.chat_slash import (Clear, Exit, Help, Invalid, Load, MultiLine, Retry, Save, SetMath, SetParam, SetSystem,
                                 SetThink, Stats, SwitchModel, Unknown, parse_command, parse_setting)
from r1cli.console import Environment
from r1cli.client.transcript import Conversation, Turn


# ----------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize("line, expected", [
    ("/help", Help()),
    ("/?", Help()),
    ("/exit", Exit()),
    ("/quit", Exit()),
    ("  /EXIT  ", Exit()),
    ("/clear", Clear()),
    ("/retry", Retry()),
    ("/stats", Stats()),
    ("/system", SetSystem(None)),
    ("/system Answer in French.", SetSystem("Answer in French.")),
    ("/system clear", SetSystem("")),
    ("/math on", SetMath(True)),
    ("/math OFF", SetMath(False)),
    ("/think hide", SetThink(False)),
    ("/think show", SetThink(True)),
    ("/set temperature 0.7", SetParam("temperature", 0.7)),
    ("/set top_p 1", SetParam("top_p", 1.0)),
    ("/set top-p 0.9", SetParam("top_p", 0.9)),
    ("/set max_tokens 1000", SetParam("max_tokens", 1000)),
    ("/set max_tokens none", SetParam("max_tokens", None)),
    ("/save chat.json", Save("chat.json", False)),
    ("/save chat.json --force", Save("chat.json", True)),
    ("/save --force chat.json", Save("chat.json", True)),
    ("/load chat.json", Load("chat.json")),
    ("/model", SwitchModel(None)),
    ("/model r1-demo", SwitchModel("r1-demo")),
])
def test_parse_command(line, expected):
    assert parse_command(line) == expected


@pytest.mark.parametrize("line, name, suggestion", [
    ("/hepl", "hepl", "/help"),
    ("/sav x", "sav", "/save"),
    ("/exti", "exti", "/exit"),
    ("/quti", "quti", "/exit"),  # an alias's suggestion is the command it stands for
    ("/zzzzzz", "zzzzzz", None),
    ("/", "", None),
])
def test_unknown_commands_get_a_suggestion(line, name, suggestion):
    assert parse_command(line) == Unknown(name, suggestion)


@pytest.mark.parametrize("line, fragment", [
    ("/math maybe", "usage: /math on|off"),
    ("/think", "usage: /think show|hide"),
    ("/set temperature 3", "temperature must be in [0, 2], got 3"),
    ("/set temperature hot", "temperature must be a number"),
    ("/set top_p 0", "top_p must be in (0, 1]"),
    ("/set max_tokens 0", "max_tokens must be at least 1"),
    ("/set max_tokens 1.5", "whole number"),
    ("/set temprature 0.5", "did you mean temperature?"),
    ("/set", "/set takes one of temperature, top_p, max_tokens"),
    ("/save", "usage: /save FILE"),
    ("/load", "usage: /load FILE"),
    ("/exit now", "/exit takes no argument"),
])
def test_misused_commands_say_how(line, fragment):
    result = parse_command(line)
    assert isinstance(result, Invalid)
    assert fragment in result.message


@given(st.text(max_size=40))
def test_parse_command_never_raises(text):
    parse_command("/" + text)


@pytest.mark.parametrize("name, raw, value", [
    ("temperature", "0", 0.0), ("temperature", "2", 2.0), ("temperature", "0.6", 0.6),
    ("top_p", "0.01", 0.01), ("max_tokens", "1", 1), ("max_tokens", "OFF", None),
])
def test_parse_setting_accepts(name, raw, value):
    assert parse_setting(name, raw) == value


@pytest.mark.parametrize("name, raw", [
    ("temperature", "-0.1"), ("temperature", "nan"), ("temperature", "inf"), ("top_p", "1.01"), ("top_p", "0"),
    ("max_tokens", "-5"), ("max_tokens", ""),
])
def test_parse_setting_refuses(name, raw):
    with pytest.raises(ValueError):
        parse_setting(name, raw)


def test_every_command_is_in_help():
    for name in chat_slash.COMMANDS:
        assert chat_slash.COMMANDS[name].startswith("/" + name)


# ----------------------------------------------------------------------------------------------- multi-line
def test_plain_line_passes_through():
    assert MultiLine().feed("What is 2+3?") == "What is 2+3?"


def test_triple_quote_block():
    m = MultiLine()
    assert m.feed('"""') is None and m.active
    assert m.feed("first line") is None
    assert m.feed("") is None
    assert m.feed("second line") is None
    assert m.feed('"""') == "first line\n\nsecond line"
    assert not m.active


def test_triple_quote_text_on_opening_and_closing_lines():
    m = MultiLine()
    assert m.feed('"""What is') is None
    assert m.feed('2+3?"""') == "What is\n2+3?"


def test_triple_quote_on_one_line():
    assert MultiLine().feed('"""What is 2+3?"""') == "What is 2+3?"


def test_slash_inside_a_block_is_text():
    m = MultiLine()
    m.feed('"""')
    assert m.feed("/exit") is None
    assert m.feed('"""') == "/exit"


# ----------------------------------------------------------------------------------------------- conversation
def _conv() -> Conversation:
    return Conversation(turns=[Turn("What is 2+3?", "\n\nThe answer is \\boxed{5}.", "I need to add 2 and 3.", "stop"),
                               Turn("And 7*6?", "partial", "thinking", None, interrupted=True),
                               Turn("Why?", "", "hmm", None, interrupted=True)],
                        system="Be brief.", math=True, model="r1-demo")


def test_messages_carry_final_answers_only_and_fold_the_system_text():
    conv = _conv()
    msgs = rules.build_messages(conv.history(), "What is 9+8?", system=conv.system, math=conv.math)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("Be brief.\n\nWhat is 2+3?\n" + rules.MATH_DIRECTIVE_EN)
    assert msgs[1]["content"] == "\n\nThe answer is \\boxed{5}."  # no reasoning
    assert all("I need to add" not in m["content"] for m in msgs)
    assert msgs[2]["content"] == "And 7*6?\n" + rules.MATH_DIRECTIVE_EN
    assert msgs[3]["content"] == "partial"  # an interrupted answer is kept as far as it went
    # "Why?" was interrupted before any answer: left out, so no question dangles unanswered.
    assert msgs[4]["content"] == "What is 9+8?\n" + rules.MATH_DIRECTIVE_EN
    assert all(m["role"] != "system" for m in msgs)


def test_messages_math_off_and_prefill():
    conv = Conversation(math=False)
    assert rules.build_messages(conv.history(), "hi", math=False, prefill_think=True) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\n"}]


turn_st = st.builds(Turn, st.text(), st.text(), st.text(), st.one_of(st.none(), st.sampled_from(["stop", "length"])),
                    st.booleans())
conv_st = st.builds(Conversation, st.lists(turn_st, max_size=5), st.one_of(st.none(), st.text()), st.booleans(),
                    st.one_of(st.none(), st.text(max_size=20)))


@settings(max_examples=60, deadline=None)
@given(conv_st)
def test_save_load_round_trip_is_exact(tmp_path_factory, conv):
    path = tmp_path_factory.mktemp("rt") / "c.json"
    conv.save(path)
    loaded = Conversation.load(path)
    assert loaded == conv
    again = path.with_name("d.json")
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_save_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "c.json"
    _conv().save(path)
    with pytest.raises(FileExistsError):
        Conversation().save(path)
    Conversation().save(path, force=True)
    assert Conversation.load(path) == Conversation()


@pytest.mark.parametrize("content, fragment", [
    ("[]", "not an r1 chat file"),
    ('{"format": "r1-chat", "version": 9}', "unsupported version 9"),
    ('{"format": "r1-chat", "version": 1, "turns": [{"assistant": "x"}]}', 'turn 1 has no "user"'),
    ('{"format": "r1-chat", "version": 1, "turns": [{"user": "x", "bogus": 1}]}', "turn 1"),
    ("{nope", "not JSON"),
])
def test_load_refuses_other_files(tmp_path, content, fragment):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(transcript.ConversationFileError, match=fragment.replace("(", r"\(")):
        Conversation.load(path)


# ----------------------------------------------------------------------------------------------- the loop, offline
class FakeTarget:
    base_url = "http://127.0.0.1:9/v1"
    model = "fake"


def _chat(monkeypatch, replies):
    """A Chat whose client answers from `replies` (a list of (reasoning, answer) or exceptions)."""
    from r1cli.client import stream, sync

    sent = []

    def stream_chat(target, messages, params, on_piece, **kw):
        sent.append(messages)
        reply = replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        reasoning, answer = reply
        for piece in reasoning.split(" "):
            on_piece("reasoning", piece + " ")
        for piece in answer.split(" "):
            on_piece("answer", piece + " ")
        c = stream.Completion(model="fake", reasoning=reasoning, content=answer, finish_reason="stop",
                              usage={"completion_tokens": 7})
        c.timing.ttft_s, c.timing.total_s, c.timing.tokens_per_s = 0.01, 0.1, 70.0
        return c

    monkeypatch.setattr(sync, "stream_chat", stream_chat)
    monkeypatch.setattr(sync, "inspect_prompt", lambda *args, **kwargs: None)
    out, err = io.StringIO(), io.StringIO()
    env = Environment(io.StringIO(), out, err)
    return chat.Chat(env, FakeTarget(), chat.Settings(), interactive=False), sent, out, err


def test_turns_accumulate_and_retry_regenerates(monkeypatch):
    chat, sent, out, err = _chat(monkeypatch, [("r1", "A one"), ("r2", "A two"), ("r3", "A three")])
    chat.handle("Q1")
    chat.handle("Q2")
    assert [t.user for t in chat.conversation.turns] == ["Q1", "Q2"]
    chat.handle("/retry")
    assert [t.assistant for t in chat.conversation.turns] == ["A one", "A three"]
    assert [m["role"] for m in sent[2]] == ["user", "assistant", "user"]  # Q2 re-asked after Q1 only
    assert out.getvalue() == "A one \n\nA two \n\nA three \n"


def test_server_gone_keeps_the_conversation_and_the_next_message_retries(monkeypatch):
    from r1cli.errors import NoServerError

    chat, sent, out, err = _chat(monkeypatch, [("r", "A one"), NoServerError("no server answers at x (refused)"),
                                               ("r", "A two")])
    chat.handle("Q1")
    chat.handle("Q2")
    assert "the server does not answer at x" in err.getvalue()
    assert "conversation is kept" in err.getvalue()
    assert len(chat.conversation.turns) == 1
    chat.handle("/retry")
    assert [t.user for t in chat.conversation.turns] == ["Q1", "Q2"]


def test_unknown_command_is_never_sent(monkeypatch):
    chat, sent, out, err = _chat(monkeypatch, [])
    assert chat.handle("/frobnicate") is True
    assert sent == []
    assert "unknown command /frobnicate" in err.getvalue()
    assert chat.handle("/exit") is False


def test_interrupt_keeps_the_partial_answer(monkeypatch):

    def stream_chat(target, messages, params, on_piece, **kw):
        on_piece("answer", "half an ")
        raise KeyboardInterrupt

    from r1cli.client import sync

    chat, sent, out, err = _chat(monkeypatch, [])
    monkeypatch.setattr(sync, "stream_chat", stream_chat)
    chat.handle("Q")
    assert chat.conversation.turns == [Turn("Q", "half an ", "", None, interrupted=True)]
    assert out.getvalue() == "half an \n"
    assert "[interrupted]" in err.getvalue()


# ----------------------------------------------------------------------------------------------- render
@pytest.mark.parametrize("pieces, width, rows, col", [
    (["abc"], 10, 0, 3),
    (["a" * 10], 10, 0, 10),  # pending wrap: still on the first row
    (["a" * 10, "b"], 10, 1, 1),
    (["a" * 10, "\n"], 10, 1, 0),  # a newline at the margin moves one row, not two
    (["a" * 25], 10, 2, 5),
    (["ab\ncd\n"], 10, 2, 0),
    (["中文" * 3], 5, 2, 4),  # wide characters: 2 cells each, no split across the margin
    (["\t", "x"], 20, 0, 9),
])
def test_cursor_tracks_rows(pieces, width, rows, col):
    cur = render.Cursor(width)
    for p in pieces:
        cur.advance(p)
    assert (cur.rows, cur.col) == (rows, col)


@given(st.lists(st.text(alphabet="ab \n", max_size=30), max_size=10), st.integers(1, 30))
def test_cursor_is_independent_of_chunking(pieces, width):
    a, b = render.Cursor(width), render.Cursor(width)
    for p in pieces:
        a.advance(p)
    b.advance("".join(pieces))
    assert (a.rows, a.col) == (b.rows, b.col)


def test_sanitize_drops_escape_sequences_keeps_text():
    assert render.sanitize("a\x1b[31mb\tc\r\nd\x07") == "a[31mb\tc\nd"


def test_protect_tex_outside_code_only():
    text = "Area \\[ \\pi r^2 \\] and\n```\nprint('\\[')\n```\n"
    assert render.protect_tex(text) == "Area \\\\[ \\pi r^2 \\\\] and\n```\nprint('\\[')\n```\n"


def test_markdown_rendering_keeps_tex_backslashes():
    assert "\\[" in render.render_markdown("**Answer**: \\[ x = 5 \\]", 80)


def test_looks_like_markdown():
    assert render.looks_like_markdown("# Title\ntext")
    assert render.looks_like_markdown("a **bold** word")
    assert not render.looks_like_markdown("The answer is \\boxed{5}.")


def test_stats_line():
    assert render.stats_line(31, 0.012, 622.1, "stop", total_s=0.06) == \
        "31 tokens · TTFT 0.01 s · 622.1 tok/s · 0.06 s · stop"


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def tty(monkeypatch):
    """A colour terminal on stdout (and stdin), stderr aside."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = _Tty()
    return Environment(_Tty(), out, io.StringIO()), out


def test_terminal_view_streams_then_rerenders_markdown_in_place(tty):
    env, out = tty
    view = render.TerminalView(env, show_thinking=True)
    view("reasoning", "think")
    for piece in ["\n\n# Title", "\n", "some **bold** text\n", "line 3"]:
        view("answer", piece)
    view.flush()  # the client flushes when it has caught up with the server
    streamed = out.getvalue()
    assert streamed == "\x1b[2mthink\x1b[0m\n\n# Title\nsome **bold** text\nline 3"
    view.finish()
    tail = out.getvalue()[len(streamed):]
    assert tail.startswith("\r\x1b[2A\x1b[J")  # back to the answer's first row, erase, render once
    assert "**" not in tail and "Title" in tail


def test_terminal_view_leaves_answers_taller_than_the_screen_alone(tty):
    env, out = tty
    view = render.TerminalView(env, show_thinking=False)
    text = "".join(f"- item {i}\n" for i in range(200))
    view("answer", text)
    view.finish()
    assert out.getvalue() == text  # streamed once, never redrawn


def test_chat_history_file_is_private(tmp_path, monkeypatch):
    """What the user typed is kept in the state directory: 0600 like the rest (it was created 0644)."""
    import stat

    monkeypatch.setenv("R1_HOME", str(tmp_path / "home"))
    path = chat.history_path()
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_piped_turn_without_answer_text_offers_r1_ask_not_retry(monkeypatch):
    """A turn that ends without answer text (finish reason stop): a fake client, as no real server ends so on
    demand. A pipe has no later /retry to type (issue 32): the fix is the question asked afresh, the next line
    goes on, and the run's exit status is 4."""
    chat, sent, out, err = _chat(monkeypatch, [("hmm", ""), ("r2", "A two")])
    chat.handle("What's 9+8?")
    chat.handle("Q2")
    assert "r1: no answer to \"What's 9+8?\": the model ended without answer text (finish reason stop)" in err.getvalue()
    assert "  fix: ask it afresh, on its own: r1 ask 'What'\"'\"'s 9+8?'" in err.getvalue()
    assert "r1: the conversation is kept; the next line goes on from it (exit status 4 at the end)" in err.getvalue()
    assert "/retry" not in err.getvalue()
    assert [t.user for t in chat.conversation.turns] == ["Q2"]
    assert int(chat.last_error.status) == 4
