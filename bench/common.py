"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import torch

from advcore.device import describe


def sched_autogroup() -> bool | None:
    """Whether Linux shares the CPU between sessions before it reads nice values (``kernel.sched_autogroup_enabled``;
    None where the setting is not there): with it, only a worker's own autogroup nice ranks it below another
    session's processes (ui.workers.lower_priority)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


def environment(device: torch.device, **extra: object) -> dict:
    """What the figures were measured on, including how busy the machine was; ``extra`` adds versions."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": describe(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE keeps idle OpenMP threads off shared cores
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **extra,
    }
