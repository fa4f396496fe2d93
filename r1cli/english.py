"""Counted nouns in r1's messages, as English writes them: "1 file", "0 files", "3 processes"."""


def counted(n: int, noun: str) -> str:
    """N and NOUN, in the plural unless N is 1 (+"es" after s, x, z, ch and sh: "processes"; else +"s")."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}{'es' if noun.endswith(('s', 'x', 'z', 'ch', 'sh')) else 's'}"
