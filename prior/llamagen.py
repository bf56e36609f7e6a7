"""LlamaGen's class-to-image GPTs (c2i_B_256.pt, c2i_L_384.pt, ...; FoundationVision/LlamaGen) as GPTPriors.

LlamaGen's Transformer is a Llama stack like GPTPrior's, laid out differently (autoregressive/models/gpt.py):

- a fused `wqkv` (3D, D) per layer, q, k, v stacked, heads contiguous in each;
- rotary pairs of adjacent dims (2j, 2j+1), where transformers pairs (j, j + d/2): each head's q and k rows are
  permuted so that new row j = old row 2j and new row j + d/2 = old row 2j + 1 (q·k is unchanged);
- 2-D rotary angles over the code grid, with zero rows for the class token (GPTPriorConfig positions="grid",
  zero_condition_rope=True; prior/rotary.py);
- its own class table `cls_embedding` (C + 1, D) whose last row is the null class of guidance: appended to the
  code embeddings it is exactly GPTPrior's vocabulary [codes K, classes C, null];
- a separate output head over the K codes, RMSNorm eps 1e-5, SwiGLU widths rounded to multiples of 256.

The grid size is not in the weights (the 256 px and 384 px models have the same shapes): it comes from the file
name (`_256` → 16x16, `_384` → 24x24) or `grid_size`. Heads come from LlamaGen's size table by (layers, width),
or `num_heads`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tessera_hub.foreign_files import read_torch_checkpoint

from .gpt import GPTPrior, GPTPriorConfig

# LlamaGen's GPT_models: (layers, width) → heads.
LLAMAGEN_HEADS = {(12, 768): 12, (24, 1024): 16, (36, 1280): 20, (48, 1536): 24, (48, 2560): 40, (22, 2048): 32,
                  (24, 3200): 32, (32, 4096): 32}
DOWNSAMPLE = 16  # LlamaGen's c2i priors model VQ-16 codes: a 256 px image is a 16x16 grid
NORM_EPS = 1e-5
ROPE_BASE = 10_000.0
LAYER_KEYS = ("attention.wqkv.weight", "attention.wo.weight", "feed_forward.w1.weight", "feed_forward.w2.weight",
              "feed_forward.w3.weight", "attention_norm.weight", "ffn_norm.weight")
# Not weights: a rotary table some checkpoints carry, and KV caches saved after sampling.
IGNORED = re.compile(r"^freqs_cis$|\.kv_cache\.")


class TrainingArguments:
    """An inert stand-in for the argparse.Namespace LlamaGen saves beside the weights ("args"): read, not run."""


def llamagen_state_dict(path: str | Path, weights: str = "model") -> dict[str, torch.Tensor]:
    """The `weights` entry ("model" or "ema") of a LlamaGen checkpoint; a bare state dict (its FSDP files, such as
    c2i_XXL_384.pt) is taken whole. Read with torch.load(weights_only=True)."""
    loaded = read_torch_checkpoint(path, {"argparse.Namespace": TrainingArguments})
    if all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    for key in (weights, "module", "state_dict"):
        if isinstance(loaded.get(key), dict):
            return loaded[key]
    raise ValueError(f"{path} has no {weights!r} weights; it holds {sorted(loaded)}")


def grid_size_from_name(path: str | Path) -> int | None:
    """16 for a `..._256.pt`, 24 for `..._384.pt` (image side / 16); None when the name says no size."""
    match = re.search(r"_(\d{2,4})\.(?:pt|pth|bin|ckpt)$", Path(path).name)
    return int(match.group(1)) // DOWNSAMPLE if match else None


def permute_rotary_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(H·d, D) q or k rows with rotary pairs (2j, 2j+1) → pairs (j, j + d/2), per head."""
    rows, width = weight.shape
    head_dim = rows // num_heads
    return weight.view(num_heads, head_dim // 2, 2, width).transpose(1, 2).reshape(rows, width)


def convert_llamagen_gpt(state: dict[str, torch.Tensor], grid_size: int, num_heads: int | None = None,
                         source: str = "the checkpoint", class_names: tuple[str, ...] | None = None) -> GPTPrior:
    """A LlamaGen c2i state dict → a GPTPrior (eval mode) over grid_size² codes, every weight placed: a key of the
    checkpoint that finds no place, or a missing one, is a ValueError naming it."""
    state = {k: v for k, v in state.items() if not IGNORED.search(k)}
    for key in ("tok_embeddings.weight", "cls_embedding.embedding_table.weight", "output.weight", "norm.weight"):
        if key not in state:
            if "cls_embedding.cap_proj.fc1.weight" in state:
                raise ValueError(f"{source} is a text-to-image LlamaGen model (caption embedder): only class-to-image "
                                 f"checkpoints (c2i_*.pt) convert")
            raise ValueError(f"{source} has no {key!r}: expected a LlamaGen class-to-image GPT state dict")
    codebook_size, width = state["tok_embeddings.weight"].shape
    layers = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))), default=-1)
    heads = num_heads or LLAMAGEN_HEADS.get((layers, width))
    if heads is None:
        raise ValueError(f"{source}: {layers} layers of width {width} is not a LlamaGen size "
                         f"({sorted(LLAMAGEN_HEADS)}): give num_heads")
    class_rows = state["cls_embedding.embedding_table.weight"].shape[0]
    if class_rows < 2:
        raise ValueError(f"{source}: a class table of {class_rows} rows; expected the classes and a null row")
    config = GPTPriorConfig(
        codebook_size=codebook_size, grid_shape=(grid_size, grid_size), num_classes=class_rows - 1,
        class_names=tuple(class_names) if class_names else (), hidden_size=width, num_layers=layers,
        num_heads=heads, intermediate_size=state["layers.0.feed_forward.w1.weight"].shape[0] if layers else None,
        rope_theta=ROPE_BASE, positions="grid", zero_condition_rope=True, rms_norm_eps=NORM_EPS,
        tokenizer_source="llamagen")
    model = GPTPrior(config)
    llama = model.transformer
    placed: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": torch.cat([state.pop("tok_embeddings.weight"),
                                                state.pop("cls_embedding.embedding_table.weight")]),
        # Rows past the codes are never read (only code logits are sampled): zeros.
        "lm_head.weight": torch.cat([state.pop("output.weight"), llama.lm_head.weight.new_zeros(class_rows, width)]),
        "model.norm.weight": state.pop("norm.weight"),
    }
    for i in range(layers):
        old = {name: state.pop(f"layers.{i}.{name}", None) for name in LAYER_KEYS}
        missing = [f"layers.{i}.{name}" for name, tensor in old.items() if tensor is None]
        if missing:
            raise ValueError(f"{source} lacks {missing}")
        qkv = old["attention.wqkv.weight"]
        if qkv.shape[0] != 3 * width:
            raise ValueError(f"{source}: layers.{i}.attention.wqkv.weight has {qkv.shape[0]} rows; expected "
                             f"{3 * width} (as many key/value heads as query heads)")
        q, k, v = qkv.split(width)
        new = f"model.layers.{i}."
        placed |= {
            new + "self_attn.q_proj.weight": permute_rotary_rows(q, heads),
            new + "self_attn.k_proj.weight": permute_rotary_rows(k, heads),
            new + "self_attn.v_proj.weight": v,
            new + "self_attn.o_proj.weight": old["attention.wo.weight"],
            new + "mlp.gate_proj.weight": old["feed_forward.w1.weight"],
            new + "mlp.up_proj.weight": old["feed_forward.w3.weight"],
            new + "mlp.down_proj.weight": old["feed_forward.w2.weight"],
            new + "input_layernorm.weight": old["attention_norm.weight"],
            new + "post_attention_layernorm.weight": old["ffn_norm.weight"],
        }
    if state:
        raise ValueError(f"{source}: {len(state)} weights find no place in a GPTPrior: {sorted(state)[:6]}")
    target = llama.state_dict()
    unfilled = sorted(set(target) - set(placed))
    if unfilled:
        raise ValueError(f"{source}: nothing fills {unfilled[:6]}")
    for name, tensor in placed.items():
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ValueError(f"{source}: {name} gets shape {tuple(tensor.shape)}; expected {tuple(target[name].shape)}")
    llama.load_state_dict({name: tensor.float() for name, tensor in placed.items()}, strict=True)
    return model.eval()


def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (torchvision's list, shipped with it: nothing is fetched)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def read_llamagen_gpt(path: str | Path, grid_size: int | None = None, num_heads: int | None = None,
                      weights: str = "model") -> GPTPrior:
    """A LlamaGen c2i checkpoint file → a GPTPrior; a 1,000-class model gets the ImageNet class names."""
    grid = grid_size or grid_size_from_name(path)
    if grid is None:
        raise ValueError(f"{Path(path).name} does not say its image size (c2i_B_256.pt: 256 px, a 16x16 grid): "
                         f"give grid_size (the image side / 16)")
    state = llamagen_state_dict(path, weights)
    classes = state.get("cls_embedding.embedding_table.weight")
    names = imagenet_class_names() if classes is not None and classes.shape[0] == 1001 else None
    return convert_llamagen_gpt(state, grid, num_heads, source=str(path), class_names=names)
