"""matplotlib for `--plot` (bench, eval): an optional extra, imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path

from r1cli.errors import UsageError


def require_matplotlib():
    """pyplot on the file-only backend, or a usage error naming the extra (checked before any work)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib", hint="pip install 'r1cli[plot]'  (or: pip install matplotlib)") from None
    return plt


def save(plt, fig, path: Path) -> None:
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
