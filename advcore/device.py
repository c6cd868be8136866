"""Where tensors live: CUDA when there is a GPU, else the CPU."""

from __future__ import annotations

import torch

from advcore.errors import AdvlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """True when torch sees a usable CUDA device."""
    return torch.cuda.is_available()


def pick_device(choice: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"``."""
    if isinstance(choice, torch.device):
        return choice
    choice = (choice or "auto").lower()
    if choice not in DEVICE_CHOICES:
        raise AdvlabError(f"Unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    if choice == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if choice == "cuda" and not cuda_available():
        raise AdvlabError("No CUDA GPU is available on this machine; use --device cpu.")
    return torch.device(choice)


def describe(device: torch.device) -> str:
    """A short human label such as ``"CPU (2 threads)"`` or ``"CUDA: NVIDIA H100"``."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


#: On a GPU a batch this many times the command's CPU default (capped at :data:`MAX_GPU_BATCH`) keeps it busy;
#: a GPU of less than :data:`LARGE_GPU_BYTES` gets a factor of 2 instead. Not measured here (no GPU).
GPU_BATCH_FACTOR = 8
MAX_GPU_BATCH = 4096
LARGE_GPU_BYTES = 16 * 2**30


def batch_size_for(device: torch.device, cpu_batch: int) -> int:
    """The batch size of a run on ``device`` when none is given: ``cpu_batch`` (the command's CPU default) on the
    CPU, where a larger batch gains nothing on a few cores and costs memory; on a GPU ``cpu_batch`` times
    :data:`GPU_BATCH_FACTOR` (2 on a GPU under 16 GiB), at most :data:`MAX_GPU_BATCH` images. The batch also fixes
    the seeds (batch ``b`` of a run seeds with ``seed + b``), so a GPU run's random starts differ from a CPU
    run's unless ``--batch-size`` is given."""
    if device.type != "cuda":
        return cpu_batch
    memory = torch.cuda.get_device_properties(device).total_memory
    factor = GPU_BATCH_FACTOR if memory >= LARGE_GPU_BYTES else 2
    return max(cpu_batch, min(cpu_batch * factor, MAX_GPU_BATCH))
