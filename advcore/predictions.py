"""What a model answers: top-k predictions with class names, and class names typed by people."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advcore.errors import AdvlabError


@dataclass
class Prediction:
    """Top-k classes of one image."""

    labels: list[int]
    names: list[str]
    probs: list[float]

    @property
    def label(self) -> int:
        return self.labels[0]

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def prob(self) -> float:
        return self.probs[0]


def predict(model: torch.nn.Module, x: torch.Tensor, classes: list[str], k: int = 5) -> list[Prediction]:
    """Top-``k`` predictions for each image of a batch."""
    with torch.no_grad():
        logits = model(x)
    return top_k(logits, classes, k)


def top_k(logits: torch.Tensor, classes: list[str], k: int = 5) -> list[Prediction]:
    """Top-``k`` predictions for each row of ``logits``."""
    probs = logits.detach().softmax(dim=1)
    p, i = probs.topk(min(k, probs.shape[1]), dim=1)
    out = []
    for pr, ix in zip(p.cpu().tolist(), i.cpu().tolist(), strict=True):
        out.append(Prediction(labels=ix, names=[classes[j] for j in ix], probs=pr))
    return out


def resolve_class(name_or_index: str | int, classes: list[str]) -> int:
    """A class id from an index (``"281"``), an exact name (``"tabby"``) or ``"281: tabby"``."""
    s = str(name_or_index).strip()
    head = s.split(":", 1)[0].strip()
    if head.lstrip("-").isdigit():
        i = int(head)
        if not 0 <= i < len(classes):
            raise AdvlabError(f"Class index {i} is out of range 0-{len(classes) - 1}.")
        return i
    lowered = [c.lower() for c in classes]
    if s.lower() in lowered:
        return lowered.index(s.lower())
    close = [c for c in classes if s.lower() in c.lower()][:5]
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise AdvlabError(f"Unknown class {s!r}.{hint}")
