"""The one place that picks matplotlib's backend for every figure the stack writes."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: files only, so it works on Ray workers and machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
