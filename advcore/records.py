"""Results as records: JSON-safe values for files, downloads and the command line."""

from __future__ import annotations

import math


def json_safe(obj):
    """Replace non-finite floats (PSNR of an unchanged image is inf) by ``None`` for strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
