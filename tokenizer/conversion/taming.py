"""taming-transformers' VQGAN (a Lightning .ckpt, optionally with its YAML) -> a Tessera VQGAN.

The weights sit under "state_dict" in taming's names (TAMING below); the perceptual loss and discriminator
(loss.*) and an EMA quantiser's statistics are dropped. The YAML (model.params: embed_dim, n_embed, ddconfig) is
not needed, since the config is read off the weights' shapes; given, every field is checked against them and its
`resolution` kept. Taming's Gumbel quantiser (quantize.proj, quantize.embed) has no Tessera counterpart.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tessera_hub.foreign_files import read_torch_checkpoint
from .layout import ForeignTokenizer, ForeignWeights, KeyLayout

DEFAULT_RESOLUTION = 256  # taming's published VQGANs (ImageNet f16, OpenImages f8) train at 256 px
# What a taming checkpoint holds beside the tokenizer: the loss's LPIPS and discriminator, and the EMA
# quantiser's cluster statistics (its codebook is quantize.embedding.weight as in the plain one).
IGNORED = (r"loss\.", r"quantize\.embedding\.(cluster_size|embed_avg)$", r"model_ema\.", r"colorize$")
# latent-diffusion's VQ first stages keep taming's layout and quantiser (their LitEma copy, model_ema.*, is dropped).
SUPPORTED_TARGETS = ("taming.models.vqgan.VQModel", "taming.models.vqgan.VQNoDiscModel", "taming.models.vqgan.EMAVQ",
                     "ldm.models.autoencoder.VQModel", "ldm.models.autoencoder.VQModelInterface")


class LightningCallbackKey:
    """Stands in for pytorch-lightning's ModelCheckpoint class, which Lightning 1.0 (taming's) pickles as a dict
    key in the checkpoint's "callbacks" entry: only a reference, never an instance, so nothing runs."""


LIGHTNING_STAND_INS = {"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": LightningCallbackKey}

TAMING = KeyLayout(down="down", up="up", res="block", middle=("mid.block_1", "mid.attn_1", "mid.block_2"),
                   decoder_from_lowest=False)


def read_taming(checkpoint: Path, config_path: Path | None = None) -> ForeignTokenizer:
    """A taming VQModel checkpoint (+ its YAML) as a ForeignTokenizer; ValueError naming what does not fit."""
    loaded = read_torch_checkpoint(checkpoint, LIGHTNING_STAND_INS)
    state = loaded.get("state_dict", loaded)
    if "quantize.embed.weight" in state or "quantize.proj.weight" in state:
        raise ValueError(f"{checkpoint} is a taming GumbelVQ (quantize.proj / quantize.embed): its Gumbel-softmax "
                         f"quantiser has no Tessera counterpart; expected a VQModel or EMAVQ checkpoint")
    weights = ForeignWeights(state, str(checkpoint), ignore=IGNORED)
    yaml_params = _read_yaml(config_path) if config_path is not None else None
    resolution = yaml_params["ddconfig"].get("resolution", DEFAULT_RESOLUTION) if yaml_params else DEFAULT_RESOLUTION
    config = TAMING.infer_config(weights, resolution=resolution, l2_normalize=False)
    if yaml_params is not None:
        _check_against_yaml(config, yaml_params, config_path)
    return ForeignTokenizer(config, weights, TAMING)


def _read_yaml(path: Path) -> dict:
    """model.params of a taming YAML, after checking model.target is a quantiser Tessera holds."""
    if not Path(path).is_file():
        raise ValueError(f"{path} is missing: expected taming's model YAML (the one beside its checkpoint)")
    model = (yaml.safe_load(Path(path).read_text()) or {}).get("model", {})
    target = model.get("target", "")
    if target not in SUPPORTED_TARGETS:
        raise ValueError(f"{path}: model.target={target!r}; Tessera converts {list(SUPPORTED_TARGETS)}")
    params = model.get("params", {})
    if "ddconfig" not in params:
        raise ValueError(f"{path}: no model.params.ddconfig; expected a taming VQGAN YAML")
    return params


def _check_against_yaml(config, params: dict, path: Path) -> None:
    dd = params["ddconfig"]
    for name in ("double_z", "tanh_out", "give_pre_end", "use_linear_attn"):
        if dd.get(name, False):
            raise ValueError(f"{path}: ddconfig.{name} is {dd[name]!r}; a Tessera VQGAN has no such option")
    attn_type = dd.get("attn_type", "vanilla")  # latent-diffusion's: none = no attention anywhere
    if attn_type not in ("vanilla", "none"):
        raise ValueError(f"{path}: ddconfig.attn_type={attn_type!r}; a Tessera VQGAN holds 'vanilla' or 'none'")
    attention_levels = () if attn_type == "none" else tuple(
        level for level in range(len(dd["ch_mult"])) if dd["resolution"] // 2 ** level in dd.get("attn_resolutions", ()))
    autoencoder = config.autoencoder
    expected = {"ch": (dd["ch"], autoencoder.channels), "ch_mult": (tuple(dd["ch_mult"]), autoencoder.channel_mult),
                "num_res_blocks": (dd["num_res_blocks"], autoencoder.num_res_blocks),
                "z_channels": (dd["z_channels"], autoencoder.z_channels),
                "attn_resolutions": (attention_levels, autoencoder.attention_levels),
                "n_embed": (params.get("n_embed"), config.quantizer.codebook_size),
                "embed_dim": (params.get("embed_dim"), config.quantizer.code_dim)}
    wrong = {name: values for name, values in expected.items() if values[0] != values[1]}
    if wrong:
        raise ValueError(f"{path} does not describe the checkpoint's weights: "
                         + "; ".join(f"{name} {yaml_value} in the YAML, {weights_value} in the weights"
                                     for name, (yaml_value, weights_value) in wrong.items()))
