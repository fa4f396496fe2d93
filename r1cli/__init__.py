"""r1: deploy DeepSeek-R1 distills on vLLM and talk to them from a terminal or a pipeline.

Python users: ``from r1cli import Client`` (see r1cli.library)."""

__version__ = "0.1.0"

_LIBRARY = ("Client", "AsyncClient", "Conversation", "Answer", "Sampling", "Reasoning", "AnswerText", "Done")


def __getattr__(name: str):
    # Imported on first use: `r1 --version` and the CLI's start never pay for the library's asyncio and threads.
    if name in _LIBRARY:
        from r1cli import library

        return getattr(library, name)
    raise AttributeError(f"module 'r1cli' has no attribute {name!r}")
