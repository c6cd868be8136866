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
