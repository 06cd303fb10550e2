"""Latency histograms and counters for the policy server and the control loop."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from typing import Any

import numpy as np

# Bucket upper edges in milliseconds, log-spaced from 10 us to 10 s; the last bucket is open-ended.
DEFAULT_EDGES_MS = tuple(float(f"{v:.3g}") for v in np.logspace(-2, 4, 31))


class LatencyHistogram:
    """Counts per bucket for all samples, plus exact percentiles over the most recent ``window`` samples."""

    def __init__(self, edges_ms: tuple[float, ...] = DEFAULT_EDGES_MS, window: int = 10_000) -> None:
        self.edges_ms = np.asarray(edges_ms, dtype=np.float64)
        self._edges = [float(e) for e in self.edges_ms]  # bisect on a list: no numpy call per sample
        self.counts = np.zeros(len(edges_ms) + 1, dtype=np.int64)
        self.recent: deque[float] = deque(maxlen=window)
        self.total = 0

    def record(self, seconds: float) -> None:
        ms = seconds * 1e3
        self.counts[bisect_left(self._edges, ms)] += 1  # same bucket as np.searchsorted(side="left")
        self.recent.append(ms)
        self.total += 1

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.recent, float), q)) if self.recent else None

    def to_dict(self) -> dict[str, Any]:
        return {"edges_ms": self.edges_ms.tolist(), "counts": self.counts.tolist(), "total": self.total,
                "p50_ms": self.percentile(50), "p99_ms": self.percentile(99),
                "max_ms": max(self.recent) if self.recent else None}


class ServerMetrics:
    """What ``metrics`` requests return: request and error counts, batch sizes, latency histograms."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.batches: Counter[int] = Counter()
        self.handle = LatencyHistogram()
        self.inference = LatencyHistogram()

    def to_dict(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "errors": dict(self.errors),
                "batch_sizes": {str(k): v for k, v in sorted(self.batches.items())},
                "latency": self.handle.to_dict(), "inference": self.inference.to_dict()}
