"""Published tokenizers as Tessera tokenizers: diffusers' VQModel, taming-transformers' VQGAN, LlamaGen's VQ and
transformers' JanusVQVAE, converted weight for weight (layout.py does the copying and the strict checks; one
module per source reads its files and names its keys).

    from tokenizer.conversion import convert_tokenizer
    model = convert_tokenizer("llamagen", "vq_ds16_c2i.pt")          # a tokenizer.VQGAN
    model.save_pretrained("runs/llamagen-vq16")

A source is a local path or a Hugging Face Hub repo id (for the single-file sources, with `filename` naming
the file in the repo). Foreign PyTorch files are read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

import json
from pathlib import Path

from tessera_hub import resolve_folder
from tessera_hub.foreign_files import foreign_checkpoint

from ..models.vqgan import VQGAN
from .diffusers import CONFIG as DIFFUSERS_CONFIG, WEIGHTS as DIFFUSERS_WEIGHTS, read_diffusers
from .janus import CONFIG as JANUS_CONFIG, INDEX as JANUS_INDEX, WEIGHTS as JANUS_WEIGHTS, janus_prefix, janus_shards, read_janus
from .layout import ForeignTokenizer
from .llamagen import read_llamagen
from .taming import read_taming

SOURCES = ("diffusers", "taming", "llamagen", "janus")


def read_foreign(
    source: str,
    name_or_path: str | Path,
    *,
    config: str | Path | None = None,
    filename: str | None = None,
    subfolder: str = "",
    weights: str = "model",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ForeignTokenizer:
    """Read a published tokenizer of `source` (one of SOURCES). `config`: taming's YAML (a path, or a file name
    in the Hub repo); `filename`: the checkpoint's name in a Hub repo (taming, llamagen); `subfolder`: where a
    diffusers repo keeps its VQModel (e.g. "vqvae"); `weights`: "model" or "ema" (llamagen)."""
    hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    if source == "diffusers":
        sub = f"{subfolder.strip('/')}/" if subfolder else ""
        folder = resolve_folder(name_or_path, (f"{sub}{DIFFUSERS_CONFIG}", f"{sub}{DIFFUSERS_WEIGHTS}"),
                                "a diffusers VQModel folder", **hub)
        return read_diffusers(folder, subfolder)
    if source == "janus":
        folder = resolve_folder(name_or_path, (JANUS_CONFIG,), "a JanusVQVAE or Janus model folder",
                                also_download=(JANUS_INDEX,), **hub)
        # The config says which weight files hold the tokenizer: only those are fetched.
        prefix = janus_prefix(json.loads((folder / JANUS_CONFIG).read_text()))
        shards = janus_shards(folder, prefix) if (folder / JANUS_INDEX).is_file() else [JANUS_WEIGHTS]
        folder = resolve_folder(name_or_path, (JANUS_CONFIG, *shards), "a JanusVQVAE or Janus model folder",
                                also_download=(JANUS_INDEX,), **hub)
        return read_janus(folder)
    if source in ("taming", "llamagen"):
        checkpoint, yaml_path = foreign_checkpoint(name_or_path, filename, config, **hub)
        if source == "taming":
            return read_taming(checkpoint, yaml_path)
        if config is not None:
            raise ValueError("config is taming's YAML; a llamagen checkpoint needs none")
        if weights not in ("model", "ema"):
            raise ValueError(f"weights={weights!r}: expected 'model' or 'ema'")
        return read_llamagen(checkpoint, weights)
    raise ValueError(f"source={source!r}: expected one of {list(SOURCES)}")


def convert_tokenizer(source: str, name_or_path: str | Path, **options) -> VQGAN:
    """The published tokenizer as a tokenizer.VQGAN (eval mode); options as read_foreign's."""
    return read_foreign(source, name_or_path, **options).to_tessera()
