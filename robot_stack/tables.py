"""The one CSV writer of the stack's result tables (sweeps, training evals, evaluations)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_rows(path: str | Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """``rows`` as a CSV file with a header: ``fields`` in that order (default: every key of the rows, in the order
    first seen); a field a row lacks is left blank, a key not in ``fields`` is an error. The file is written under a
    temporary name and renamed over ``path``, so a reader (or a kill) never sees half a table."""
    rows = list(rows)
    names = list(fields) if fields is not None else list(dict.fromkeys(key for row in rows for key in row))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
