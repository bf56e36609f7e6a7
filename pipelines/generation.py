"""ImageGenerationPipeline: prior sampling → codebook lookup → decoding, in one call.

A pipeline folder (on disk or a Hub repo) holds tokenizer/ and prior/ (each config.json + model.safetensors)
and pipeline.json, which names the prior type; the class comes from the explicit table PRIOR_CLASSES, never
from a string import. Inference only: float32 on CPU unless moved with `to(device)`.

With a two-level (VQ-VAE-2) tokenizer, `prior` writes the top grid and `bottom_prior` (bottom_prior/ in the
folder) the bottom grid conditioned on it; the tokenizer decodes both. Codes then go in and out as one grid per
level, coarsest first: `indices` is (top, bottom), a code prefix is (top codes, bottom codes).
A vae has no codes and no prior: its latents come from its own prior N(0, I) (scaled by `temperature`), and the
folder holds tokenizer/ alone; such a pipeline is unconditional and takes no top-k, top-p, guidance or prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelHubMixin
from PIL import Image

from prior.loading import PRIOR_CLASSES, load_prior
from tessera_hub import CONFIG_NAME, WEIGHTS_NAME, read_json_object, resolve_folder
from tessera_hub.model_card import ModelCardMixin, class_list
from tokenizer import load_tokenizer
from tokenizer.data import ImageTransform, image_to_rgb
from tokenizer.models.loading import Tokenizer

PRIOR_PARTS = ("prior", "bottom_prior")  # the folders of the priors, coarsest level first
PIPELINE_NAME = "pipeline.json"
PIPELINE_FORMAT = "tessera-pipeline"
PIPELINE_VERSION = 1
OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class GenerationOutput:
    images: Any  # list of PIL images, a float32 array (B, H, W, 3) in [0, 1], or a float tensor (B, 3, H, W) in [0, 1]
    # (B, h, w) the sampled codes; (top, bottom) for two levels; None for a vae
    indices: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None
    latents: torch.Tensor | None = None  # a vae's sampled latents (B, C, h, w)


def check_pair(tokenizer: Tokenizer, prior: torch.nn.Module, level: int = 0) -> None:
    """A prior must have been trained on codes of exactly this tokenizer, at this level: its codebook and grid,
    and for the bottom level of a two-level tokenizer, the top grid as its context."""
    t, p = tokenizer.config, prior.config
    problems = []
    if t.codebook_sizes[level] != p.codebook_size:
        problems.append(f"codebook size: tokenizer {t.codebook_sizes[level]}, prior {p.codebook_size}")
    if tuple(t.grid_shapes[level]) != tuple(p.grid_shape):
        problems.append(f"grid: tokenizer {tuple(t.grid_shapes[level])}, prior {tuple(p.grid_shape)}")
    context = (t.codebook_sizes[0], tuple(t.grid_shapes[0])) if level else (0, ())
    if (p.context_codebook_size, tuple(p.context_grid_shape)) != context:
        problems.append(f"context: the prior reads {tuple(p.context_grid_shape) or 'no'} top grid of "
                        f"{p.context_codebook_size} codes; expected {context[1] or 'none'}")
    if p.class_names and len(p.class_names) != p.num_classes:
        problems.append(f"classes: prior has {p.num_classes} classes but {len(p.class_names)} names")
    converted = (getattr(tokenizer, "converted_from", None) or {}).get("source")
    if p.tokenizer_source is not None and converted != p.tokenizer_source:
        made = f"was converted from {converted}" if converted else "was not converted from a published checkpoint"
        problems.append(f"tokenizer source: the prior models codes of a tokenizer converted from "
                        f"{p.tokenizer_source} (tessera convert --source {p.tokenizer_source}); this tokenizer {made}")
    fingerprint = tokenizer.fingerprint()
    if p.tokenizer_fingerprint is not None and p.tokenizer_fingerprint != fingerprint:
        problems.append(f"tokenizer fingerprint: tokenizer {fingerprint[:12]}, prior trained on {p.tokenizer_fingerprint[:12]}")
    if problems:
        name = ("top " if tokenizer.num_levels > 1 else "") if level == 0 else "bottom "
        raise ValueError(f"the tokenizer and the {name}prior do not belong together: " + "; ".join(problems))


EXPECTED_PRIORS = {0: "no prior (a vae samples its latents from N(0, I))", 1: "one prior and no bottom_prior",
                   2: "a top prior and a bottom_prior"}


class ImageGenerationPipeline(ModelCardMixin, ModelHubMixin, library_name="tessera", tags=["tessera", "image-generation"],
                              pipeline_tag="unconditional-image-generation"):
    """huggingface_hub's ModelHubMixin gives save_pretrained (the folder below and Tessera's model card README.md)
    and push_to_hub; from_pretrained is this class's own (pipeline.json, not a config.json, describes the folder)."""

    def __init__(self, tokenizer: Tokenizer, prior: torch.nn.Module | None = None,
                 bottom_prior: torch.nn.Module | None = None):
        priors = [model for model in (prior, bottom_prior) if model is not None]
        for model in priors:
            if model.prior_type not in PRIOR_CLASSES:
                raise ValueError(f"prior type {model.prior_type!r}: expected one of {sorted(PRIOR_CLASSES)}")
        if len(priors) != tokenizer.num_levels or (bottom_prior is not None and prior is None):
            raise ValueError(f"a {tokenizer.architecture} tokenizer has {tokenizer.num_levels} code level(s): "
                             f"expected {EXPECTED_PRIORS[tokenizer.num_levels]}")
        for level, model in enumerate(priors):
            check_pair(tokenizer, model, level)
        if bottom_prior is not None and bottom_prior.config.num_classes != prior.config.num_classes:
            raise ValueError(f"the top prior has {prior.config.num_classes} classes, the bottom one "
                             f"{bottom_prior.config.num_classes}: expected the same classes")
        self.tokenizer = tokenizer.eval()
        self.prior = prior.eval() if prior is not None else None
        self.bottom_prior = bottom_prior.eval() if bottom_prior is not None else None
        self._hub_mixin_config = None  # the mixin would write the constructor's None defaults as a config.json

    @property
    def priors(self) -> list[torch.nn.Module]:
        """One prior per code level, coarsest first (none for a vae)."""
        return [model for model in (self.prior, self.bottom_prior) if model is not None]

    # --- files ----------------------------------------------------------------------------------------

    def card_title(self) -> str:
        return "Tessera image generation pipeline"

    def card_summary(self) -> str:
        """One line on what the pipeline holds: the tokenizer's grids and codebooks, the priors, the classes."""
        config = self.tokenizer.config
        side = config.autoencoder.resolution
        if self.prior is None:
            return f"A {self.tokenizer.architecture} at {side}x{side} px: images from its Gaussian latent (no prior)."
        grids = " + ".join(f"{h}x{w} codes of {v}" for (h, w), v in zip(config.grid_shapes, config.codebook_sizes))
        priors = " and ".join(p.prior_type for p in self.priors)
        classes = (f"{self.prior.config.num_classes} classes" + (f": {class_list(self.class_names)}" if self.class_names else "")
                   if self.prior.config.num_classes else "unconditional")
        return (f"{side}x{side}-pixel images as {grids} ({self.tokenizer.architecture} tokenizer), written by a "
                f"{priors} prior ({classes}).")

    def card_snippet(self) -> str:
        labels = f", class_labels={self.class_names[0]!r}" if self.class_names else ""
        return ('from pipelines import ImageGenerationPipeline\n\n'
                'pipe = ImageGenerationPipeline.from_pretrained("{name}")\n'
                f'images = pipe(16{labels}).images  # PIL images')

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write tokenizer/, prior/ (not for a vae) and, for two levels, bottom_prior/ (each config.json +
        model.safetensors + model card) and pipeline.json into `save_directory`."""
        def card(part: str) -> dict:  # a part's card loads it through the pipeline, by the pipeline's name
            return {"name": self.card_name, "snippet": 'from pipelines import ImageGenerationPipeline\n\n'
                    f'{part} = ImageGenerationPipeline.from_pretrained("{{name}}").{part}'}

        self.tokenizer.save_pretrained(save_directory / "tokenizer", model_card_kwargs=card("tokenizer"))
        meta = {"format": PIPELINE_FORMAT, "version": PIPELINE_VERSION}
        for part, model in zip(PRIOR_PARTS, self.priors):
            model.save_pretrained(save_directory / part, model_card_kwargs=card(part))
            meta[f"{part}_type"] = model.prior_type
        (save_directory / PIPELINE_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, map_location: str | torch.device = "cpu",
                        **hub) -> "ImageGenerationPipeline":
        """Load a folder written by `save_pretrained`, or a Hub repo id holding that layout (only its files are
        fetched, into the Hugging Face cache; `hub`: huggingface_hub's revision, cache_dir, local_files_only,
        token). Every model loads strictly onto `map_location`."""
        folder = resolve_folder(
            name_or_path, [PIPELINE_NAME], "a folder written by ImageGenerationPipeline.save_pretrained",
            also_download=[f"{part}/{name}" for part in ("tokenizer", *PRIOR_PARTS)
                           for name in (CONFIG_NAME, WEIGHTS_NAME)], **hub,
        )
        path = folder / PIPELINE_NAME
        meta = read_json_object(path)
        if meta.get("format") != PIPELINE_FORMAT or meta.get("version") != PIPELINE_VERSION:
            raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; expected "
                             f"{PIPELINE_FORMAT!r} version {PIPELINE_VERSION}")
        priors = []
        for part in PRIOR_PARTS:  # pipeline.json names one prior type per code level (none for a vae)
            if f"{part}_type" not in meta:
                break
            prior_cls = PRIOR_CLASSES.get(meta.get(f"{part}_type"))
            if prior_cls is None:
                raise ValueError(f"{path}: {part}_type {meta.get(f'{part}_type')!r}; expected one of {sorted(PRIOR_CLASSES)}")
            priors.append(prior_cls.from_pretrained(folder / part, map_location=map_location))
        return cls(load_tokenizer(folder / "tokenizer", map_location=map_location), *priors)

    def to(self, device: str | torch.device) -> "ImageGenerationPipeline":
        self.tokenizer.to(device)
        for prior in self.priors:
            prior.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    @property
    def class_names(self) -> list[str]:
        return list(self.prior.config.class_names) if self.prior is not None else []

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

    def cycled_class_labels(self, num_images: int) -> list[int] | None:
        """Every class in turn over `num_images` (0, 1, ..., 0, 1, ...), for evaluating and showing a
        class-conditional prior; None where the prior takes no labels (unconditional, or no prior: the VAE)."""
        if self.prior is None or self.prior.config.num_classes == 0:
            return None
        return [i % self.prior.config.num_classes for i in range(num_images)]

    def _class_index(self, label) -> int:
        if isinstance(label, str):
            if label not in self.class_names:
                raise ValueError(f"class {label!r}: expected one of {self.class_names}")
            return self.class_names.index(label)
        return int(label)

    def prefix_codes(self, prefix, num_images: int) -> list[torch.Tensor | None]:
        """Codes to keep, one entry per level (None: none): given codes (B, p) / (B, rows, w) (for two levels, a
        (top, bottom) pair of them), or (image, rows) to encode an image and keep its first `rows` rows of the
        coarsest grid, and of a bottom grid the rows those cover."""
        levels = self.tokenizer.num_levels
        if prefix is None:
            return [None] * levels
        if isinstance(prefix, tuple) and len(prefix) == 2 and isinstance(prefix[1], (int, np.integer)):
            image, rows = prefix
            h = self.tokenizer.config.grid_shapes[0][0]
            if not 0 <= int(rows) <= h:
                raise ValueError(f"prefix rows={rows}: expected 0..{h} code rows")
            grids = self.tokenizer.encode_levels(self.image_tensor(image, num_images))  # per level (B, h_l, w_l)
            return [grid[:, : int(rows) * grid.shape[1] // h] for grid in grids]
        given = [prefix] if levels == 1 else list(prefix)
        if len(given) != levels:
            raise ValueError(f"a prefix of {len(given)} code grids: expected (top codes, bottom codes) for two levels")
        codes = [None if g is None else torch.as_tensor(g).long() for g in given]
        return [c.expand(num_images, *c.shape[1:]) if c is not None and c.shape[0] == 1 and num_images > 1 else c
                for c in codes]

    def image_tensor(self, image, num_images: int) -> torch.Tensor:
        """A PIL image or a tensor (3, H, W) / (B, 3, H, W) in [-1, 1] → (num_images, 3, R, R) on the device."""
        resolution = self.tokenizer.config.autoencoder.resolution
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
        compile: bool = False,
        progress: bool = True,
    ) -> GenerationOutput:
        """Sample `num_images` code grids with the prior (two levels: the top grids of all images, then the bottom
        grids given them, with the same settings) and decode them with the tokenizer, `batch_size` images per
        forward pass in both. `compile=True` samples GPT priors through their compiled decode step
        (`GPTPrior.sample`; worth it on a GPU, where it replays CUDA graphs); `progress` shows a bar per prior
        while it draws (progress=False: none). output_type "pil", "np" (float32 (B, H, W, 3) in [0, 1], as
        diffusers) or "pt" (float (B, 3, H, W) in [0, 1])."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}: expected one of {OUTPUT_TYPES}")
        if compile and (not self.priors or any(prior.prior_type != "gpt" for prior in self.priors)):
            raise ValueError("compile=True: only GPT priors have a compiled sampler; this pipeline has "
                             f"{[prior.prior_type for prior in self.priors]}")
        if num_images < 1 or batch_size < 1:
            raise ValueError(f"num_images={num_images}, batch_size={batch_size}: expected positive integers")
        if self.prior is None:
            return self._sample_latents(num_images, class_labels, temperature, top_k, top_p, guidance_scale, prefix,
                                        generator, output_type, batch_size)
        labels = self.class_indices(class_labels, num_images)
        prefixes = self.prefix_codes(prefix, num_images)
        settings = dict(class_labels=labels, temperature=temperature, top_k=top_k, top_p=top_p,
                        guidance_scale=guidance_scale, generator=generator, max_batch_size=batch_size,
                        progress=progress, **({"compile": True} if compile else {}))
        grids = []  # (num_images, h_l, w_l) per level, coarsest first
        for level, prior in enumerate(self.priors):
            grids.append(prior.sample(num_images, prefix=prefixes[level], context=grids[0] if level else None,
                                      **settings))
        images = _decode_in_batches(lambda *batch: self.tokenizer.decode_levels(batch), batch_size, *grids)
        indices = tuple(grid.cpu() for grid in grids)
        return GenerationOutput(images=_convert(images, output_type), indices=indices[0] if len(indices) == 1 else indices)

    def _sample_latents(self, num_images, class_labels, temperature, top_k, top_p, guidance_scale, prefix, generator,
                        output_type, batch_size) -> GenerationOutput:
        """A vae: latents z ~ N(0, temperature²·I) through the decoder. The prior's options do not apply."""
        unused = {"class_labels": class_labels is not None, "top_k": top_k is not None, "top_p": top_p is not None,
                  "guidance_scale": guidance_scale != 1.0, "prefix": prefix is not None}
        if any(unused.values()):
            raise ValueError(f"{[name for name, given in unused.items() if given]}: a vae pipeline samples its "
                             f"latents from N(0, I) with no prior, so it is unconditional and takes only temperature")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: expected a positive scale of the latents' spread")
        # One draw per batch of images, in order: a seed gives the latents it always gave (one draw of all differs).
        latents = torch.cat([
            temperature * torch.randn((min(batch_size, num_images - start), *self.tokenizer.config.latent_shape),
                                      generator=generator, device=self.device)
            for start in range(0, num_images, batch_size)
        ])  # (B, C, h, w)
        images = _decode_in_batches(self.tokenizer.decode, batch_size, latents)
        return GenerationOutput(images=_convert(images, output_type), indices=None, latents=latents.cpu())


def _decode_in_batches(decode, batch_size: int, *inputs: torch.Tensor) -> torch.Tensor:
    """`decode` over `inputs` (each (B, ...): one code grid per level, or a vae's latents), `batch_size` images at
    a time → images (B, 3, H, W) in [0, 1] on the CPU."""
    images = []
    for start in range(0, inputs[0].shape[0], batch_size):
        decoded = decode(*(x[start : start + batch_size] for x in inputs)).float().clamp(-1, 1)
        images.append(((decoded + 1) / 2).cpu())
    return torch.cat(images)


def load_pipeline(name_or_path: str | Path | None = None, map_location: str | torch.device = "cpu", *,
                  tokenizer: str | Path | None = None, prior: str | Path | None = None,
                  bottom_prior: str | Path | None = None) -> ImageGenerationPipeline:
    """A pipeline folder or Hub repo id (ImageGenerationPipeline.from_pretrained), or a vae's own folder (a vae
    needs no prior, so the folder train_tokenizer wrote is a whole pipeline); or, instead of a pipeline folder,
    the folders of a `tokenizer` and its `prior` (and `bottom_prior` for two levels) as the commands wrote them."""
    if (name_or_path is None) == (tokenizer is None):
        raise ValueError("give a pipeline folder, or a tokenizer folder with its prior folder (none for a vae)")
    if name_or_path is None:
        priors = [load_prior(folder, map_location) if folder else None for folder in (prior, bottom_prior)]
        return ImageGenerationPipeline(load_tokenizer(tokenizer, map_location=map_location), *priors)
    if prior is not None or bottom_prior is not None:
        raise ValueError("a pipeline folder holds its priors: give a prior folder only with a tokenizer folder")
    path = Path(name_or_path)
    if (path / CONFIG_NAME).is_file() and not (path / PIPELINE_NAME).is_file():
        return ImageGenerationPipeline(load_tokenizer(path, map_location=map_location))
    return ImageGenerationPipeline.from_pretrained(name_or_path, map_location=map_location)


def _convert(pixels: torch.Tensor, output_type: str):
    """Images (B, 3, H, W) in [0, 1] as diffusers' pipelines give them: "pt" as they are, "np" as float32
    (B, H, W, 3) in [0, 1], "pil" as 8-bit RGB pictures."""
    if output_type == "pt":
        return pixels
    array = pixels.permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    if output_type == "np":
        return array
    return [Image.fromarray(a) for a in (array * 255).round().astype(np.uint8)]
