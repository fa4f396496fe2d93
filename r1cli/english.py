"""Counted nouns in r1's messages, as English writes them: "1 file", "0 files", "3 processes"."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """N and NOUN, in the plural (PLURAL, else NOUN + "s") unless N is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
