"""english.counted: the one rule for counted nouns in r1's messages (pull, route, stop, sleep, doctor, chat, ask, eval)."""

import pytest

from r1cli.english import counted


@pytest.mark.parametrize("n, noun, text", [
    (0, "file", "0 files"),
    (1, "file", "1 file"),
    (7, "file", "7 files"),
    (1, "process", "1 process"),
    (4, "process", "4 processes"),
    (0, "process", "0 processes"),
    (2, "GPU", "2 GPUs"),
    (2, "turn", "2 turns"),
])
def test_counted(n, noun, text):
    assert counted(n, noun) == text
