"""ImageGenerationPipeline: prior sampling → codebook lookup → decoding, in one call.

A pipeline folder (on disk or a Hub repo) holds tokenizer/ and prior/ (each config.json + model.safetensors)
and pipeline.json, which names the prior type; the class comes from the explicit table PRIOR_CLASSES, never
from a string import. Inference only: float32 on CPU unless moved with `to(device)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from prior.gpt import GPTPrior
from prior.pixelcnn import PixelCNNPrior
from tokenizer import VQGAN
from tokenizer.data import ImageTransform, image_to_rgb
from tokenizer.hub import push_pretrained, resolve_folder
from tokenizer.vqgan import CONFIG_NAME, WEIGHTS_NAME

PRIOR_CLASSES = {"gpt": GPTPrior, "pixelcnn": PixelCNNPrior}
PIPELINE_NAME = "pipeline.json"
PIPELINE_FORMAT = "tessera-pipeline"
PIPELINE_VERSION = 1
OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class GenerationOutput:
    images: Any  # list of PIL images, a uint8 array (B, H, W, 3), or a float tensor (B, 3, H, W) in [0, 1]
    indices: torch.Tensor  # (B, h, w) the sampled codes


def check_pair(tokenizer: VQGAN, prior: torch.nn.Module) -> None:
    """A prior must have been trained on codes of exactly this tokenizer."""
    t, p = tokenizer.config, prior.config
    problems = []
    if t.codebook_size != p.codebook_size:
        problems.append(f"codebook size: tokenizer {t.codebook_size}, prior {p.codebook_size}")
    if tuple(t.grid_shapes[0]) != tuple(p.grid_shape):
        problems.append(f"grid: tokenizer {tuple(t.grid_shapes[0])}, prior {tuple(p.grid_shape)}")
    if p.class_names and len(p.class_names) != p.num_classes:
        problems.append(f"classes: prior has {p.num_classes} classes but {len(p.class_names)} names")
    fingerprint = tokenizer.fingerprint()
    if p.tokenizer_fingerprint is not None and p.tokenizer_fingerprint != fingerprint:
        problems.append(f"tokenizer fingerprint: tokenizer {fingerprint[:12]}, prior trained on {p.tokenizer_fingerprint[:12]}")
    if problems:
        raise ValueError("the tokenizer and the prior do not belong together: " + "; ".join(problems))


class ImageGenerationPipeline:
    def __init__(self, tokenizer: VQGAN, prior: torch.nn.Module):
        if prior.prior_type not in PRIOR_CLASSES:
            raise ValueError(f"prior type {prior.prior_type!r}: expected one of {sorted(PRIOR_CLASSES)}")
        check_pair(tokenizer, prior)
        self.tokenizer, self.prior = tokenizer.eval(), prior.eval()

    # --- files ----------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer/ and prior/ (each config.json + model.safetensors) and pipeline.json into `directory`."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.prior.save_pretrained(directory / "prior")
        meta = {"format": PIPELINE_FORMAT, "version": PIPELINE_VERSION, "prior_type": self.prior.prior_type}
        (directory / PIPELINE_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
    ) -> "ImageGenerationPipeline":
        """Load a folder written by `save_pretrained`, or a Hub repo id holding that layout (only its files are
        fetched, into the Hugging Face cache). Both models load strictly onto `map_location`."""
        folder = resolve_folder(
            name_or_path, [PIPELINE_NAME], "a folder written by ImageGenerationPipeline.save_pretrained",
            also_download=[f"{part}/{name}" for part in ("tokenizer", "prior") for name in (CONFIG_NAME, WEIGHTS_NAME)],
            revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
        )
        path = folder / PIPELINE_NAME
        meta = json.loads(path.read_text())
        if meta.get("format") != PIPELINE_FORMAT or meta.get("version") != PIPELINE_VERSION:
            raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; expected "
                             f"{PIPELINE_FORMAT!r} version {PIPELINE_VERSION}")
        prior_cls = PRIOR_CLASSES.get(meta.get("prior_type"))
        if prior_cls is None:
            raise ValueError(f"{path}: prior_type {meta.get('prior_type')!r}; expected one of {sorted(PRIOR_CLASSES)}")
        return cls(VQGAN.from_pretrained(folder / "tokenizer", map_location=map_location),
                   prior_cls.from_pretrained(folder / "prior", map_location=map_location))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        commit_message: str | None = None,
    ):
        """Upload what `save_pretrained` writes to the Hub repo `repo_id` (created if missing); returns the commit info."""
        return push_pretrained(
            self, repo_id, revision=revision, private=private, token=token, commit_message=commit_message
        )

    def to(self, device: str | torch.device) -> "ImageGenerationPipeline":
        self.tokenizer.to(device)
        self.prior.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    @property
    def class_names(self) -> list[str]:
        return list(self.prior.config.class_names)

    # --- generation -----------------------------------------------------------------------------------

    def class_indices(self, class_labels, num_images: int) -> torch.Tensor | None:
        """Class labels as indices (num_images,): ints, names, or one of either for all images."""
        if class_labels is None:
            return None
        if isinstance(class_labels, (str, int, np.integer)):
            class_labels = [class_labels] * num_images
        if torch.is_tensor(class_labels):
            labels = class_labels.long().flatten()
        else:
            labels = torch.tensor([self._class_index(c) for c in class_labels], dtype=torch.long)
        if labels.numel() != num_images:
            raise ValueError(f"{labels.numel()} class labels for num_images={num_images}: expected one or one per image")
        return labels

    def _class_index(self, label) -> int:
        if isinstance(label, str):
            if label not in self.class_names:
                raise ValueError(f"class {label!r}: expected one of {self.class_names}")
            return self.class_names.index(label)
        return int(label)

    def prefix_codes(self, prefix, num_images: int) -> torch.Tensor | None:
        """Codes to keep: given codes (B, p) / (B, rows, w), or (image, rows) to encode an image and keep rows."""
        if prefix is None:
            return None
        if isinstance(prefix, tuple) and len(prefix) == 2 and not torch.is_tensor(prefix[1]):
            image, rows = prefix
            h, w = self.tokenizer.config.grid_shapes[0]
            if not 0 <= int(rows) <= h:
                raise ValueError(f"prefix rows={rows}: expected 0..{h} code rows")
            codes = self.tokenizer.encode(self._image_tensor(image, num_images))  # (B, h, w)
            return codes[:, : int(rows)]
        codes = torch.as_tensor(prefix).long()
        if codes.shape[0] == 1 and num_images > 1:
            codes = codes.expand(num_images, *codes.shape[1:])
        return codes

    def _image_tensor(self, image, num_images: int) -> torch.Tensor:
        """A PIL image or a tensor (3, H, W) / (B, 3, H, W) in [-1, 1] → (num_images, 3, R, R) on the device."""
        resolution = self.tokenizer.config.resolution
        if isinstance(image, Image.Image):
            pixels = torch.from_numpy(np.array(image_to_rgb(image))).permute(2, 0, 1)  # (3, H, W) uint8, a writable copy
            image = ImageTransform(resolution)(pixels)
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.ndim == 3:
            image = image[None]
        if image.shape[0] == 1:
            image = image.expand(num_images, -1, -1, -1)
        if image.shape[0] != num_images:
            raise ValueError(f"{image.shape[0]} prefix images for num_images={num_images}")
        return image.to(self.device)

    @torch.no_grad()
    def __call__(
        self,
        num_images: int = 1,
        class_labels=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float = 1.0,
        prefix=None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        batch_size: int = 64,
    ) -> GenerationOutput:
        """Sample `num_images` code grids with the prior and decode them with the tokenizer."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}: expected one of {OUTPUT_TYPES}")
        if num_images < 1 or batch_size < 1:
            raise ValueError(f"num_images={num_images}, batch_size={batch_size}: expected positive integers")
        labels = self.class_indices(class_labels, num_images)
        codes_prefix = self.prefix_codes(prefix, num_images)
        indices, images = [], []
        for start in range(0, num_images, batch_size):
            stop = min(start + batch_size, num_images)
            codes = self.prior.sample(
                stop - start,
                class_labels=None if labels is None else labels[start:stop],
                temperature=temperature, top_k=top_k, top_p=top_p, guidance_scale=guidance_scale,
                prefix=None if codes_prefix is None else codes_prefix[start:stop],
                generator=generator,
            )
            indices.append(codes.cpu())
            images.append(((self.tokenizer.decode(codes).float().clamp(-1, 1) + 1) / 2).cpu())  # (b, 3, H, W) in [0, 1]
        pixels = torch.cat(images)
        return GenerationOutput(images=_convert(pixels, output_type), indices=torch.cat(indices))


def _convert(pixels: torch.Tensor, output_type: str):
    if output_type == "pt":
        return pixels
    array = (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (B, H, W, 3)
    return array if output_type == "np" else [Image.fromarray(a) for a in array]
