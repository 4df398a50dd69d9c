"""The input spec a trained model was fitted to, saved in every checkpoint: what test, predict,
export and the demo feed it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from slr.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Preprocessing:
    """Frames per clip, their square size, the crop margin around the signer's box, and the
    mean/std the encoder normalizes with (0..1 scale)."""

    num_frames: int
    image_size: int
    bbox_margin: float
    mean: tuple[float, ...] = tuple(IMAGENET_MEAN)
    std: tuple[float, ...] = tuple(IMAGENET_STD)

    @classmethod
    def from_dict(cls, spec: dict) -> Preprocessing:
        """From a checkpoint's `preprocessing` hyperparameter (lists for mean and std)."""
        return cls(
            num_frames=int(spec["num_frames"]),
            image_size=int(spec["image_size"]),
            bbox_margin=float(spec["bbox_margin"]),
            mean=tuple(spec.get("mean", IMAGENET_MEAN)),
            std=tuple(spec.get("std", IMAGENET_STD)),
        )

    def to_dict(self) -> dict:
        """The checkpoint's form: plain lists, so it reads back without this class."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def override(self, **values: float | int | None) -> Preprocessing:
        """A copy with the given values; None keeps the trained one."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})
