"""Attack one image end to end: the computation behind both the Attack page and the CLI.

``attack_image`` takes a model name, an image and attack parameters, and returns
everything a person sees: predictions before and after, the adversarial image,
its 8-bit PNG and whether that PNG still fools the model, the metrics, and the
per-iteration trajectory. The app and ``python -m advcore attack`` call this same
function, so their numbers agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from advcore import attacks, data, metrics, models
from advcore.attacks import AttackResult, StepInfo
from advcore.device import pick_device
from advcore.errors import AdvlabError
from advcore.predictions import Prediction, predict, resolve_class, top_k
from advcore.records import image_record


@dataclass
class ImageAttack:
    """The outcome of attacking one image."""

    model: str
    attack: str
    params: dict
    x: torch.Tensor  # (1, C, H, W) clean input as the model sees it
    x_adv: torch.Tensor  # (1, C, H, W) adversarial, float
    x_adv_8bit: torch.Tensor  # the same rounded to 8 bits: exactly the downloadable PNG
    clean: Prediction
    adversarial: Prediction
    adversarial_8bit: Prediction
    result: AttackResult
    metrics: dict
    png: bytes
    trajectory: Trajectory | None = None  # the iterates as 8-bit frames (``frames`` > 0)
    _gradient: torch.Tensor | None = field(default=None, repr=False, compare=False)  # input_gradient(), once

    @property
    def perturbation(self) -> torch.Tensor:
        return self.x_adv - self.x

    @property
    def attacked_label(self) -> int:
        """The class the attack's loss is taken to: the target (targeted) or the model's clean prediction."""
        return int(self.metrics["target"]) if self.metrics.get("targeted") else int(self.clean.label)

    def input_gradient(self) -> torch.Tensor:
        """:func:`input_gradient` at the clean image for :attr:`attacked_label`, computed once per result."""
        if self._gradient is None:
            self._gradient = input_gradient(self.model, self.x, self.attacked_label, self.x.device)
        return self._gradient


def attack_image(
    model_name: str,
    image: Image.Image,
    attack: str,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    alpha: float | None = None,
    target: int | str | None = None,
    device: str | torch.device = "auto",
    callback: Callable[[StepInfo], bool | None] | None = None,
    image_name: str | None = None,
    frames: int = 0,
    **extra,
) -> ImageAttack:
    """Attack ``image`` (a PIL image) on the registered model ``model_name``.

    The image is resized and centre-cropped to the model's input. Untargeted
    attacks move away from the model's own clean prediction; ``target`` (a class
    index or name) makes the attack targeted. ``extra`` holds the attack's own
    parameters (see its spec's ``params``); the metrics record every one of them, and the image by
    ``image_name`` and the SHA-256 of its pixels (``advcore.records.image_record``). ``frames`` > 1 keeps up to
    that many iterates (:class:`Trajectory`, through the per-step callback) for stepping through the attack.
    """
    spec = models.get_spec(model_name)
    attack_spec = attacks.get_attack(attack)
    extra = {**extra, **attack_spec.check(extra)}  # the attack's declared parameters, checked before any work
    dev = pick_device(device)
    model = models.load(model_name, dev)
    classes = spec.classes()
    x = data.prepare(image, spec.input_size).to(dev)
    clean = predict(model, x, classes)[0]
    target_id = None if target is None or target == "" else resolve_class(target, classes)
    if target_id is not None and target_id == clean.label:
        raise AdvlabError(f"The target class {classes[target_id]} is already the model's prediction for this image, "
                          "so there is nothing to attack: pick another target class.")
    params = dict(eps=eps, norm=norm, steps=steps, alpha=alpha, **extra)
    if target_id is not None:
        params["target"] = target_id
    y = torch.tensor([clean.label], device=dev)
    trajectory = None
    if frames > 1:
        trajectory = Trajectory(max(1, int(params.get("steps") or 1)) if attack_spec.iterative else 1, frames)
        trajectory.add(0, x[0])
        callback = trajectory.recorder(callback)
    t0 = time.perf_counter()
    res = attacks.run(attack_spec.name, model, x, y, callback=callback, **params)
    seconds = time.perf_counter() - t0
    x_adv = res.x_adv
    x8 = data.quantize_8bit(x_adv)
    adv = top_k(res.logits, classes)[0]  # the attack already evaluated x_adv: no second forward
    adv8 = predict(model, x8, classes)[0]

    def fooled(p: Prediction) -> bool:
        return p.label == target_id if target_id is not None else p.label != clean.label

    m = {k: float(v[0]) for k, v in metrics.image_metrics(x, x_adv).items()}
    with torch.no_grad():
        conf_clean_label_adv = float(metrics.confidence(res.logits, torch.tensor([clean.label], device=dev))[0])
    report = {
        **image_record(image_name, image),
        "model": model_name,
        "attack": attack_spec.name,
        "norm": norm,
        "eps": eps,
        "steps": res.params.get("steps", 1),
        "alpha": res.params.get("alpha"),
        "targeted": target_id is not None,
        "target": target_id,
        "target_name": classes[target_id] if target_id is not None else None,
        "clean_label": clean.label,
        "clean_name": clean.name,
        "clean_confidence": clean.prob,
        "adv_label": adv.label,
        "adv_name": adv.name,
        "adv_confidence": adv.prob,
        "clean_label_confidence_after": conf_clean_label_adv,
        "confidence_drop": clean.prob - conf_clean_label_adv,
        "success": fooled(adv),
        "success_8bit": fooled(adv8),
        "adv_8bit_label": adv8.label,
        "grad_evals": int(res.grad_evals[0]),
        "seconds": seconds,
        "device": str(dev),
        **m,
    }
    # The attack's declared parameters, as it ran them (defaults included).
    report.update({p.name: res.params.get(p.name, extra.get(p.name, p.default)) for p in attack_spec.params})
    # What minimal-norm attacks (robustness radius) and black-box ones (queries) measure per image.
    report.update({k: res.params[k][0] if isinstance(res.params[k], list) else res.params[k]
                   for k in ("radius", "radius_norm", "queries") if k in res.params})
    return ImageAttack(
        model=model_name, attack=attack_spec.name, params=res.params, x=x, x_adv=x_adv, x_adv_8bit=x8,
        clean=clean, adversarial=adv, adversarial_8bit=adv8, result=res, metrics=report,
        png=data.png_bytes(x_adv), trajectory=trajectory,
    )


# --------------------------------------------------------------------------- stepping through an attack

MAX_FRAMES = 100  # iterates kept for stepping through an attack: uint8, at most this many (thinned evenly)


@dataclass
class Trajectory:
    """The iterates of one attack on one image, as 8-bit images: ``frames[i]`` is iterate ``steps[i]``
    (0: the clean image; t: after gradient step t), thinned evenly to at most ``max_frames`` (the first and the
    last step are always kept). uint8 (H, W, C) arrays keep a 100-step Lite0 run at 15 MB."""

    total: int
    max_frames: int = MAX_FRAMES
    steps: list[int] = field(default_factory=list)
    frames: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.total < 1 or self.max_frames < 2:
            raise ValueError("a trajectory needs at least one step and two frames")
        n = min(self.total, self.max_frames - 1)  # frame 0 is the clean image
        self._keep = {round(1 + i * (self.total - 1) / max(n - 1, 1)) for i in range(n)} if n > 1 else {self.total}

    def add(self, step: int, x: torch.Tensor) -> None:
        """Keep iterate ``step`` (x: (1, C, H, W) or (C, H, W) in [0, 1]) when it is one of the kept steps."""
        if step == 0 or step in self._keep or step == self.total:
            if self.steps and self.steps[-1] == step:
                return
            img = data.quantize_8bit(x.detach()).reshape(x.shape[-3:])
            self.steps.append(int(step))
            self.frames.append((img * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())

    def recorder(self, then: Callable[[StepInfo], bool | None] | None = None) -> Callable[[StepInfo], bool | None]:
        """A per-step callback for ``attacks.run`` that keeps the first image's iterate, then calls ``then``."""

        def on_step(info: StepInfo) -> bool | None:
            self.add(info.step, info.x_adv[0])
            return then(info) if then is not None else None

        return on_step

    def tensor(self, i: int) -> torch.Tensor:
        """Frame ``i`` as a (1, C, H, W) float tensor in [0, 1] (exactly its 8-bit pixels)."""
        return torch.from_numpy(self.frames[i]).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def frame_prediction(model_name: str, trajectory: Trajectory, i: int, device: str | torch.device = "auto",
                     k: int = 5) -> Prediction:
    """The model's top-``k`` for frame ``i`` of a trajectory (its 8-bit pixels, one forward pass)."""
    dev = pick_device(device)
    return predict(models.load(model_name, dev), trajectory.tensor(i).to(dev), models.class_names(model_name), k=k)[0]


# --------------------------------------------------------------------------- where the model is sensitive


def input_gradient(model_name: str, x: torch.Tensor, label: int, device: str | torch.device = "auto") -> torch.Tensor:
    """Per-pixel size of the input gradient: sum over channels of |dJ/dx|, J the cross-entropy of the model's
    output at ``x`` ((1, C, H, W) in [0, 1]) to class ``label`` (the loss the gradient attacks follow,
    ``advcore.attacks.cross_entropy``; FGSM steps along sign(grad_x J), AGR paper Eq. 2). Returns an (H, W)
    float tensor on the CPU; the model is used as it is (no hooks, no change of mode)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise AdvlabError(f"input_gradient takes one image shaped (1, C, H, W), not {tuple(x.shape)}.")
    n_classes = len(models.class_names(model_name))
    if not 0 <= int(label) < n_classes:
        raise AdvlabError(f"Class {label} is not one of the model's {n_classes} classes.")
    dev = pick_device(device)
    model = models.load(model_name, dev)
    xi = x.detach().to(dev).clone().requires_grad_(True)
    with torch.enable_grad():
        loss = attacks.cross_entropy(model(xi), torch.tensor([int(label)], device=dev)).sum()
        (grad,) = torch.autograd.grad(loss, xi)
    return grad[0].abs().sum(dim=0).detach().cpu()
