"""What every prior shares: its saved folder (tessera_hub.SavedModel: config.json naming the prior type +
model.safetensors, on disk or on the Hub) and the config fields of the codes it models, with their checks."""

from __future__ import annotations

from dataclasses import dataclass

from tessera_hub import JSONConfig, SavedModel
from tessera_hub.model_card import class_list


class PriorFiles(SavedModel, tags=["image-generation"], pipeline_tag="unconditional-image-generation"):
    """save_pretrained / from_pretrained / push_to_hub (huggingface_hub's mixin) for the priors, with their model
    card. A subclass sets `prior_type` (written into config.json and checked on load) and `config_class`."""

    prior_type: str
    kind_key = "prior_type"
    noun = "prior"

    def card_title(self) -> str:
        return f"Tessera {self.prior_type} prior"

    def card_summary(self) -> str:
        """What the model card says this prior is."""
        c = self.config
        h, w = c.grid_shape
        classes = (f"class-conditional over {c.num_classes} classes" + (f" ({class_list(c.class_names)})" if c.class_names else "")
                   if c.num_classes else "unconditional")
        context = (f", conditioned on a {'x'.join(map(str, c.context_grid_shape))} top grid"
                   if c.context_codebook_size else "")
        tokenizer = (f" made by the tokenizer with fingerprint `{c.tokenizer_fingerprint[:16]}`" if c.tokenizer_fingerprint
                     else f" of a tokenizer converted from {c.tokenizer_source}" if c.tokenizer_source else "")
        parameters = sum(p.numel() for p in self.parameters())
        return (f"A {self.prior_type} prior over {h}x{w} grids of {c.codebook_size} codes{tokenizer}{context}, "
                f"{classes} ({parameters:,} parameters). It writes code grids; its tokenizer decodes them into "
                f"images (a pipeline folder holds both).")

    def card_snippet(self) -> str:
        cls = type(self).__name__
        draw = ("prior.sample(16, context=top_codes)  # given the top grids (16, h, w) of the top prior"
                if self.config.context_codebook_size else "prior.sample(16)")
        return (f'from prior import {cls}\n\nprior = {cls}.from_pretrained("{{name}}")\n'
                f'codes = {draw}  # (16, h, w) code indices for its tokenizer\'s decode')


@dataclass
class PriorCodesConfig(JSONConfig):
    """The fields every prior config starts with: the codes it models and where they came from."""

    codebook_size: int = 1024
    grid_shape: tuple[int, int] = (8, 8)
    num_classes: int = 0
    # Provenance, filled by training from the codes folder: lets a pipeline check it has the right tokenizer.
    class_names: tuple[str, ...] = ()
    tokenizer_fingerprint: str | None = None
    # A converted prior's codes come from a published tokenizer, whose fingerprint it cannot know: the format that
    # tokenizer was converted from (e.g. "llamagen"), which the pipeline checks instead.
    tokenizer_source: str | None = None
    # A bottom-level prior: the top grid it is conditioned on (0 and () for none).
    context_codebook_size: int = 0
    context_grid_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Normalise the tuples and check the fields' values and their agreement."""
        self.grid_shape = tuple(int(s) for s in self.grid_shape)
        self.context_grid_shape = tuple(int(s) for s in self.context_grid_shape)
        self.class_names = tuple(self.class_names)
        if bool(self.context_codebook_size) != bool(self.context_grid_shape):
            raise ValueError(f"context_codebook_size={self.context_codebook_size} with context_grid_shape="
                             f"{self.context_grid_shape}: expected both set (a bottom-level prior) or neither")
        if self.context_grid_shape and (len(self.context_grid_shape) != 2 or min(self.context_grid_shape) < 1
                                        or self.context_codebook_size < 2):
            raise ValueError(f"context grid {self.context_grid_shape} of {self.context_codebook_size} codes: "
                             f"expected (h, w) with positive sides and at least 2 codes")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size}: expected at least 2")
        if len(self.grid_shape) != 2 or min(self.grid_shape) < 1:
            raise ValueError(f"grid_shape={self.grid_shape}: expected (h, w) with positive sides")
        if self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes}: expected >= 0")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={self.num_classes}")
