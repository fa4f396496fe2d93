"""english.counted: the one rule for counted nouns in r1's messages (pull, route, stop, sleep, doctor)."""

import pytest

from r1cli.english import counted


@pytest.mark.parametrize("n, noun, plural, text", [
    (0, "file", None, "0 files"),
    (1, "file", None, "1 file"),
    (7, "file", None, "7 files"),
    (1, "process", "processes", "1 process"),
    (4, "process", "processes", "4 processes"),
    (2, "GPU", None, "2 GPUs"),
])
def test_counted(n, noun, plural, text):
    assert counted(n, noun, plural) == text
