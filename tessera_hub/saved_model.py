"""`SavedModel`: huggingface_hub's PyTorchModelHubMixin for Tessera's models. The mixin owns save_pretrained
(config.json, model.safetensors and its model card README.md), from_pretrained and push_to_hub; this class adds
only what Tessera needs beyond it: config.json names what the folder holds (a tokenizer's architecture, a
prior's type) and is read through the config class's `from_dict` (which also reads older folders), only
config.json and model.safetensors are fetched from the Hub (the mixin falls back to a pickle), and weights load
strictly with one-line errors naming the file or repo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin

from .configs import check_config_types, config_from_dict, read_json_object
from .folders import CONFIG_NAME, WEIGHTS_NAME, load_weights_strict, one_line, resolve_folder
from .model_card import ModelCardMixin

CONVERTED_KEY = "converted_from"  # config.json: where a converted model came from


class JSONConfig:
    """For a config dataclass: `to_dict()` is what config.json holds, `from_dict(data)` reads it back."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return config_from_dict(cls, data)


class SavedModel(ModelCardMixin, PyTorchModelHubMixin, library_name="tessera", tags=["tessera"]):
    """A subclass (an nn.Module whose __init__ takes its `config`) sets `config_class` (with `to_dict()` and a
    classmethod `from_dict(data)`) and `kind_key`: the config.json key that names what a folder holds, and the
    class attribute holding this class's value of it (a tokenizer's `architecture`, a prior's `prior_type`);
    `legacy_kind` stands where a folder predates the key; `noun` names the family in errors."""

    config_class: type
    kind_key: str
    legacy_kind: str | None = None
    noun: str = "model"
    # A model converted from a published checkpoint: {"source": its format, "path": file or repo, ...options},
    # kept in config.json beside the config (never part of it, so a tokenizer's fingerprint does not change).
    converted_from: dict | None = None

    @classmethod
    def kind(cls) -> str:
        """What this class's folders hold: the value of its `kind_key` attribute ("vqgan", "gpt", ...)."""
        return getattr(cls, cls.kind_key)

    def save_pretrained(self, save_directory: str | Path, **kwargs):
        """The mixin's save_pretrained (and push_to_hub) with Tessera's model card (`model_card_kwargs`:
        tessera_hub.model_card), refused before anything is written when a weight is not finite: a run that
        diverged must not leave a model behind."""
        bad = [name for name, tensor in self.state_dict().items()
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if bad:
            raise ValueError(f"{len(bad)} weight tensors of this {self.noun} hold NaN or infinite values "
                             f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): refusing to save it to "
                             f"{save_directory}")
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        """config.json ({kind_key: kind, **config}), then the mixin's model.safetensors."""
        config = {self.kind_key: self.kind(), **self.config.to_dict()}
        if self.converted_from:
            config[CONVERTED_KEY] = self.converted_from
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        super()._save_pretrained(save_directory)

    @classmethod
    def resolve(cls, name_or_path: str | Path, **hub) -> Path:
        """The folder holding this family's config.json and model.safetensors: `name_or_path`, or the Hub snapshot
        of that repo with only those two files fetched. `hub`: huggingface_hub's revision, cache_dir,
        local_files_only, token."""
        return resolve_folder(name_or_path, (CONFIG_NAME, WEIGHTS_NAME), f"a {cls.noun} folder", **hub)

    @classmethod
    def read_config(cls, folder: Path) -> tuple[str, dict]:
        """(what the folder holds, the rest of its config.json)."""
        data = read_json_object(folder / CONFIG_NAME)
        return data.pop(cls.kind_key, cls.legacy_kind), data

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, map_location: str | torch.device = "cpu", **hub):
        """Rebuild from a folder written by `save_pretrained`, or from a Hub repo id (only config.json and
        model.safetensors are fetched, into the Hugging Face cache; `hub`: revision, cache_dir, local_files_only,
        token). The folder must hold this class's kind, and every weight must be present and match."""
        folder = cls.resolve(name_or_path, **hub)
        kind, data = cls.read_config(folder)
        converted_from = data.pop(CONVERTED_KEY, None)
        if kind != cls.kind():
            raise ValueError(f"{folder} holds a {kind!r} {cls.noun}; expected {cls.kind()!r}")
        try:
            config = cls.config_class.from_dict(data)
            check_config_types(config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{folder / CONFIG_NAME}: {err}") from None
        model = super().from_pretrained(folder, config=config, map_location=map_location)
        model.converted_from = converted_from
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id: str, config, map_location: str | torch.device = "cpu", **hub):
        """The mixin's hook, given the resolved folder as `model_id`: build from `config`, load strictly."""
        try:
            model = cls(config)
        except RuntimeError as err:  # an allocation failure: a config.json asking for an absurd size
            raise ValueError(f"{Path(model_id) / CONFIG_NAME} describes a model that cannot be built here: "
                             f"{one_line(err)}") from None
        load_weights_strict(model, Path(model_id) / WEIGHTS_NAME, map_location)
        return model.eval()
