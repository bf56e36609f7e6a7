"""Published tokenizers converted weight for weight: the same code indices and decoded images as the reference
classes that install here (diffusers' VQModel for the taming architecture, transformers' JanusVQVAE for the
LlamaGen one), on random weights, at more than one configuration per source.

Taming and LlamaGen checkpoints are written by these tests in those repos' key layouts, renamed from the
reference models' state dicts by the maps below (written from those repos' module names, not shared with the
converters).
"""

import argparse
import json
import re
import sys
import types
import unittest.mock

import pytest
import torch
import torch.nn.functional as F
import yaml
from diffusers import VQModel
from safetensors.torch import save_file
from transformers import JanusVQVAE, JanusVQVAEConfig

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.training import train_tokenizer
from tests.conftest import run_script, tiny_prior_for, write_images
from tokenizer import VQGAN, AutoencoderConfig, QuantizerConfig, VQGANConfig, load_tokenizer
from tokenizer.conversion import convert_tokenizer
from tokenizer.data import ImageDataConfig
from tokenizer.training import TokenizerModelSettings, TrainTokenizerConfig

# Two taming-shaped VQModels (downsampling by 4): attention on the lowest level and the middle, one block per
# level; and no attention anywhere, two blocks per level, the code dimension left to the latent's.
DIFFUSERS_CONFIGS = {
    "attention": dict(block_out_channels=(32, 64, 64),
                      down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                      up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
                      latent_channels=16, num_vq_embeddings=48, vq_embed_dim=8, sample_size=16),
    "deeper": dict(block_out_channels=(32, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3,
                   up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=2, latent_channels=8,
                   num_vq_embeddings=32, mid_block_add_attention=False, sample_size=16),
    # 16 groups at widths 32 and 64: with the default 32 the norms would group the channels differently.
    "sixteen-groups": dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                           up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=8,
                           num_vq_embeddings=32, norm_num_groups=16, sample_size=16),
}
JANUS_CONFIGS = {
    "one-block": dict(base_channels=32, channel_multiplier=[1, 2, 2], num_res_blocks=1, embed_dim=8,
                      num_embeddings=64, latent_channels=16, num_patches=4),
    "two-blocks": dict(base_channels=32, channel_multiplier=[1, 1, 2], num_res_blocks=2, embed_dim=4,
                       num_embeddings=40, latent_channels=16, num_patches=5),
}


def perturbed(model: torch.nn.Module, unit_codebook: bool = False, seed: int = 0) -> torch.nn.Module:
    """Every weight moved off its initial value (norms off 1 and 0), so a swapped or dropped tensor shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
        if unit_codebook:
            embedding = model.quantize.embedding.weight
            embedding.copy_(F.normalize(embedding, dim=1))
    return model.eval()


def random_images(side: int, count: int = 3) -> torch.Tensor:
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1


def assert_same(indices: torch.Tensor, images: torch.Tensor, model: VQGAN, x: torch.Tensor) -> None:
    with torch.no_grad():
        ours = model.encode(x)
        decoded = model.decode(ours)
    assert torch.equal(ours, indices.reshape(ours.shape))
    assert (decoded - images).abs().max().item() < 1e-4 * max(1.0, images.abs().max().item())


def diffusers_reference(name: str, seed: int = 0) -> VQModel:
    return perturbed(VQModel(**DIFFUSERS_CONFIGS[name]), seed=seed)


def diffusers_outputs(model: VQModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        latents = model.encode(x).latents
        _, _, (_, _, indices) = model.quantize(latents)
        return indices, model.decode(latents).sample


# --- diffusers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DIFFUSERS_CONFIGS))
def test_diffusers_vqmodel_converts_to_equal_codes_and_images(name, tmp_path):
    reference = diffusers_reference(name)
    reference.save_pretrained(tmp_path / "repo" / "vqvae")  # as amused/amused-256 keeps it
    model = convert_tokenizer("diffusers", tmp_path / "repo", subfolder="vqvae")
    x = random_images(16)
    assert_same(*diffusers_outputs(reference, x), model, x)
    assert_same(*diffusers_outputs(reference, random_images(24)), model, random_images(24))  # another size
    model.save_pretrained(tmp_path / "tessera")  # an ordinary tokenizer from here on
    assert_same(*diffusers_outputs(reference, x), VQGAN.from_pretrained(tmp_path / "tessera"), x)


def test_diffusers_configs_a_tokenizer_cannot_hold_are_refused(tmp_path):
    config = dict(DIFFUSERS_CONFIGS["attention"], norm_type="spatial")
    (tmp_path / "movq").mkdir()
    (tmp_path / "movq" / "config.json").write_text(json.dumps({"_class_name": "VQModel", **config}))
    save_file({}, str(tmp_path / "movq" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match="norm_type='spatial'"):
        convert_tokenizer("diffusers", tmp_path / "movq")
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors is missing"):
        (tmp_path / "movq" / "diffusion_pytorch_model.safetensors").unlink()
        convert_tokenizer("diffusers", tmp_path / "movq")


# --- taming --------------------------------------------------------------------------------------------------


def taming_state_dict(reference: VQModel) -> dict:
    """diffusers' VQModel weights under taming-transformers' names (taming/modules/diffusionmodules/model.py)."""
    num_levels = len(reference.config.block_out_channels)
    out = {}
    for key, tensor in reference.state_dict().items():
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.attentions\.", r"encoder.down.\1.attn.", key)
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
        match = re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", key)
        if match:  # taming's decoder.up is indexed by resolution level (0 = full), diffusers' from the lowest
            level = num_levels - 1 - int(match.group(1))
            rest = match.group(2).replace("resnets.", "block.").replace("attentions.", "attn.").replace(
                "upsamplers.0.", "upsample.")
            key = f"decoder.up.{level}.{rest}"
        key = re.sub(r"mid_block\.resnets\.0\.", "mid.block_1.", key)
        key = re.sub(r"mid_block\.resnets\.1\.", "mid.block_2.", key)
        key = re.sub(r"mid_block\.attentions\.0\.", "mid.attn_1.", key)
        key = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        key = key.replace("group_norm", "norm").replace("to_out.0", "proj_out")
        key = re.sub(r"\.to_([qkv])\.", r".\1.", key)
        if re.search(r"\.(q|k|v|proj_out)\.weight$", key):  # taming's attention projections are 1x1 convs
            tensor = tensor[:, :, None, None]
        out[key] = tensor
    return out


def taming_yaml(reference: VQModel, resolution: int = 16) -> dict:
    c = reference.config
    widths = list(c.block_out_channels)
    attention = [resolution // 2**i for i, t in enumerate(c.down_block_types) if t.startswith("Attn")]
    return {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": c.vq_embed_dim or c.latent_channels, "n_embed": c.num_vq_embeddings,
        "ddconfig": {"double_z": False, "z_channels": c.latent_channels, "resolution": resolution, "in_channels": 3,
                     "out_ch": 3, "ch": widths[0], "ch_mult": [w // widths[0] for w in widths],
                     "num_res_blocks": c.layers_per_block, "attn_resolutions": attention, "dropout": 0.0},
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"}}}}


def lightning_checkpoint_class() -> type:
    """A class pickled by reference as pytorch-lightning's ModelCheckpoint: Lightning 1.0 (taming's) keys the
    checkpoint's "callbacks" entry by that class. Lightning itself is not installed here."""
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")
    modules = [types.ModuleType(name) for name in names]
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    modules[-1].ModelCheckpoint = cls
    return cls, dict(zip(names, modules))


def write_taming(reference: VQModel, folder, extra: dict | None = None):
    """A Lightning checkpoint as taming's are (state_dict with the loss's weights, bookkeeping, callbacks keyed
    by the ModelCheckpoint class) and its YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {**taming_state_dict(reference), "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4),
             "loss.perceptual_loss.lin0.model.1.weight": torch.zeros(1, 64, 1, 1), **(extra or {})}
    callback, modules = lightning_checkpoint_class()
    with unittest.mock.patch.dict(sys.modules, modules):  # only while pickling: the converter never sees them
        torch.save({"state_dict": state, "epoch": 3, "global_step": 1200,
                    "callbacks": {callback: {"best_model_score": None, "best_model_path": "logs/last.ckpt"}}},
                   folder / "last.ckpt")
    (folder / "model.yaml").write_text(yaml.safe_dump(taming_yaml(reference)))
    return folder / "last.ckpt", folder / "model.yaml"


def test_taming_checkpoint_converts_to_equal_codes_and_images(tmp_path):
    reference = diffusers_reference("attention", seed=2)  # taming always has attention in the middle
    checkpoint, config = write_taming(reference, tmp_path)
    x = random_images(16)
    assert_same(*diffusers_outputs(reference, x), convert_tokenizer("taming", checkpoint, config=config), x)
    assert_same(*diffusers_outputs(reference, x), convert_tokenizer("taming", checkpoint), x)  # YAML optional


def test_taming_three_levels_with_attention_at_two_resolutions(tmp_path):
    config = dict(block_out_channels=(32, 64, 64), layers_per_block=2, latent_channels=16, num_vq_embeddings=64,
                  vq_embed_dim=16, sample_size=16, down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D",
                                                                     "AttnDownEncoderBlock2D"),
                  up_block_types=("AttnUpDecoderBlock2D", "AttnUpDecoderBlock2D", "UpDecoderBlock2D"))
    reference = perturbed(VQModel(**config), seed=3)
    checkpoint, yaml_path = write_taming(reference, tmp_path)
    model = convert_tokenizer("taming", checkpoint, config=yaml_path)
    autoencoder = model.config.autoencoder
    assert autoencoder.attention_levels == (1, 2) and autoencoder.num_res_blocks == 2  # 8 and 4 px
    x = random_images(16)
    assert_same(*diffusers_outputs(reference, x), model, x)


def test_taming_mismatches_and_unknown_keys_are_named(tmp_path):
    reference = diffusers_reference("attention")
    checkpoint, config = write_taming(reference, tmp_path / "ok")
    wrong = yaml.safe_load(config.read_text())
    wrong["model"]["params"]["n_embed"] = 1024
    config.write_text(yaml.safe_dump(wrong))
    with pytest.raises(ValueError, match="n_embed 1024 in the YAML, 48 in the weights"):
        convert_tokenizer("taming", checkpoint, config=config)
    wrong["model"]["params"]["n_embed"] = 48
    wrong["model"]["params"]["ddconfig"]["tanh_out"] = True  # latent-diffusion's decoder option
    config.write_text(yaml.safe_dump(wrong))
    with pytest.raises(ValueError, match="tanh_out is True"):
        convert_tokenizer("taming", checkpoint, config=config)
    extra, _ = write_taming(reference, tmp_path / "extra", {"encoder.down.0.block.0.temb_proj.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"temb_proj\.weight"):
        convert_tokenizer("taming", extra)
    gumbel, _ = write_taming(reference, tmp_path / "gumbel", {"quantize.proj.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="GumbelVQ"):
        convert_tokenizer("taming", gumbel)


def test_checkpoints_with_python_objects_are_refused_unread(tmp_path):
    """weights_only=True: an argparse.Namespace (as LlamaGen's training saves) is never unpickled."""
    reference = diffusers_reference("attention")
    torch.save({"model": taming_state_dict(reference), "args": argparse.Namespace(lr=1e-4)}, tmp_path / "vq.pt")
    with pytest.raises(ValueError, match=r"weights_only=True.*If you trust the file"):
        convert_tokenizer("llamagen", tmp_path / "vq.pt")


# --- transformers' JanusVQVAE and LlamaGen -------------------------------------------------------------------


def janus_reference(name: str, unit_codebook: bool = True, seed: int = 0) -> JanusVQVAE:
    return perturbed(JanusVQVAE(JanusVQVAEConfig(**JANUS_CONFIGS[name])), unit_codebook=unit_codebook, seed=seed)


def janus_outputs(model: JanusVQVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        tokens = model.encode(x).image_tokens.view(x.shape[0], -1)
        return tokens, model.decode(tokens)


def janus_side(name: str) -> int:
    config = JANUS_CONFIGS[name]
    return config["num_patches"] * 2 ** (len(config["channel_multiplier"]) - 1)


@pytest.mark.parametrize("name", list(JANUS_CONFIGS))
def test_janus_vqvae_converts_to_equal_codes_and_images(name, tmp_path):
    reference = janus_reference(name)
    reference.save_pretrained(tmp_path / "janus")
    x = random_images(janus_side(name))
    assert_same(*janus_outputs(reference, x), convert_tokenizer("janus", tmp_path / "janus"), x)


def test_janus_tokenizer_is_read_out_of_a_whole_sharded_janus_model(tmp_path):
    reference = janus_reference("one-block")
    state = {f"model.vqmodel.{k}": v.contiguous() for k, v in reference.state_dict().items()}
    folder = tmp_path / "janus-pro"
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": {"model.language_model.embed_tokens.weight": torch.zeros(4, 2),
                                                  "model.generation_head.vision_head.weight": torch.zeros(64, 4)},
              "model-00002-of-00002.safetensors": state}
    for shard, tensors in shards.items():
        save_file(tensors, str(folder / shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {key: shard for shard, tensors in shards.items() for key in tensors}}))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "janus", "vq_config": JANUS_CONFIGS["one-block"],
        "vision_config": {"image_size": 32, "patch_size": 8}}))
    (folder / "model-00001-of-00002.safetensors").unlink()  # only the shard holding the tokenizer is read
    x = random_images(janus_side("one-block"))
    assert_same(*janus_outputs(reference, x), convert_tokenizer("janus", folder), x)


def test_janus_codes_follow_the_l2_normalised_lookup_the_weights_were_trained_with(tmp_path):
    """With codebook rows off unit length, transformers' encode (a raw lookup) departs from the LlamaGen lookup
    Janus was trained with; the converted model keeps the latter, and decodes as transformers does."""
    reference = janus_reference("one-block", unit_codebook=False)
    reference.save_pretrained(tmp_path / "janus")
    model = convert_tokenizer("janus", tmp_path / "janus")
    x = random_images(janus_side("one-block"))
    with torch.no_grad():
        latents = reference.quant_conv(reference.encoder(x))  # (B, D, h, w)
        flat = F.normalize(latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]), dim=1)
        expected = torch.cdist(flat, F.normalize(reference.quantize.embedding.weight, dim=1)).argmin(1)
        tokens = model.encode(x)
        assert torch.equal(tokens.flatten(), expected)
        decoded = reference.decode(tokens.view(x.shape[0], -1))
    assert (model.decode(tokens) - decoded).abs().max() < 1e-4


def llamagen_state_dict(reference: JanusVQVAE) -> dict:
    """JanusVQVAE weights under LlamaGen's names (tokenizer/tokenizer_image/vq_model.py), with its usage buffer."""
    out = {"quantize.codebook_used": torch.zeros(65536)}
    for key, tensor in reference.state_dict().items():
        key = re.sub(r"^(encoder\.down|decoder\.up)\.", lambda m: m.group(1).split(".")[0] + ".conv_blocks.", key)
        key = key.replace(".block.", ".res.").replace("mid.block_1.", "mid.0.").replace("mid.attn_1.", "mid.1.")
        out[key.replace("mid.block_2.", "mid.2.")] = tensor
    return out


@pytest.mark.parametrize("name", list(JANUS_CONFIGS))
def test_llamagen_checkpoint_converts_to_equal_codes_and_images(name, tmp_path):
    reference = janus_reference(name, seed=4)
    torch.save({"model": llamagen_state_dict(reference), "steps": 1000}, tmp_path / "vq_ds8_c2i.pt")
    model = convert_tokenizer("llamagen", tmp_path / "vq_ds8_c2i.pt")
    assert model.config.quantizer.l2_normalize and not model.config.quantizer.use_ema
    x = random_images(janus_side(name))
    assert_same(*janus_outputs(reference, x), model, x)
    with pytest.raises(ValueError, match="no 'ema' entry"):
        convert_tokenizer("llamagen", tmp_path / "vq_ds8_c2i.pt", weights="ema")


# --- a converted tokenizer in the command lines and the pipeline ---------------------------------------------


def test_converted_tokenizer_tokenizes_generates_and_fine_tunes(tmp_path):
    reference = diffusers_reference("attention")
    reference.save_pretrained(tmp_path / "vqmodel")
    result = run_script("convert_checkpoint.py", "--source", "diffusers", tmp_path / "vqmodel",
                        "--output_dir", tmp_path / "tok", "--resolution", 32)
    summary = json.loads(result.stdout)
    assert summary["grid"] == [8, 8] and summary["codebook_size"] == 48 and summary["config"]["resolution"] == 32
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["converted_from"]["source"] == "diffusers"
    assert load_tokenizer(tmp_path / "tok").converted_from["path"] == str(tmp_path / "vqmodel")
    images = write_images(tmp_path / "pictures", 5, size=16)
    manifest = tokenize_dataset(tmp_path / "tok", TokenizeDatasetConfig(
        dataset=str(images), split="train", output_dir=str(tmp_path / "codes"), num_workers=0, progress=False))
    assert manifest["count"] == 5 and manifest["grid_shapes"] == [[8, 8]]  # at the recorded 32 px
    tokenizer = VQGAN.from_pretrained(tmp_path / "tok")
    pipeline = ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer))
    assert pipeline(num_images=2, output_type="pt", generator=torch.Generator().manual_seed(0)).images.shape == (2, 3, 32, 32)
    config = TrainTokenizerConfig(
        output_dir=str(tmp_path / "fine-tuned"), init_from=str(tmp_path / "tok"), max_steps=2, batch_size=2,
        num_workers=0, progress=False, log_every=1, image_every=2, checkpoint_every=2,
        data=ImageDataConfig(dataset=str(images), split="train", resolution=16),
        model=TokenizerModelSettings(autoencoder=AutoencoderConfig(resolution=16)))
    fine_tuned = VQGAN.from_pretrained(train_tokenizer(config))
    assert fine_tuned.config.autoencoder.attention_levels == (2,) and fine_tuned.config.autoencoder.channels == 32
    before, after = tokenizer.state_dict(), fine_tuned.state_dict()
    assert not torch.equal(before["decoder.conv_out.weight"], after["decoder.conv_out.weight"])  # it trained


def test_imagenet_preset_is_llamagens_vq16_layer_for_layer():
    """The imagenet-vq16 preset builds exactly the tensors of JanusVQVAE's defaults (LlamaGen's VQ-16), so a
    converted VQ-16 and one trained here are the same network (meta device: no memory, no time)."""
    from tokenizer.conversion.janus import JANUS
    from tokenizer.conversion.layout import autoencoder_blocks
    from tokenizer.training.presets import TOKENIZER_PRESETS

    with torch.device("meta"):
        preset = TOKENIZER_PRESETS["imagenet-vq16"]["model"]
        ours = VQGAN(VQGANConfig(AutoencoderConfig(**preset["autoencoder"]), QuantizerConfig(**preset["quantizer"])))
        reference = JanusVQVAE(JanusVQVAEConfig())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == 71_883_403
    reference_modules = dict(reference.named_modules())
    for block in autoencoder_blocks(ours):
        assert JANUS.block_prefix(block, 5) in reference_modules, block
    assert sum(b.kind == "attn" for b in autoencoder_blocks(ours)) == 2 + 3  # after each block of the lowest level
