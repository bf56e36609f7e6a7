#!/usr/bin/env python
"""Benchmark: converted published tokenizer architectures at 256 px, Tessera against the reference class on the
same weights: encode (images -> indices) and decode (indices -> images) time per image, and agreement.

  taming-f16      diffusers' VQModel shaped as taming-transformers' ImageNet f16-1024 VQGAN (width 128,
                  multipliers 1,1,2,2,4, two blocks per level, attention at 16 px and in the middle, 256-dim
                  latent and codes, 1,024 codes), converted with --source diffusers
  llamagen-vq16   transformers' JanusVQVAE at its defaults, which are LlamaGen's VQ-16 (16,384 8-dim
                  l2-normalised codes), converted with --source janus

Weights are random (seeded; nothing is downloaded), so this measures speed and agreement, not quality. The
reference encode is the class's own (diffusers: encode + quantize; JanusVQVAE.encode) and so is its decode
(diffusers: the codebook entries through decode(force_not_quantize=True); JanusVQVAE.decode). Agreement is the
share of equal code indices and the largest pixel difference of both decoders on the same indices. The JanusVQVAE's
codebook rows are set to unit length, where its raw lookup and LlamaGen's normalised one agree (see
tokenizer/conversion/janus.py). Times are the best of --repeats runs after a warm-up, all threads of the machine.
Needs the dev extra (diffusers).

    python benchmarks/bench_conversion.py --output_json outputs/bench_conversion.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenizer.conversion import convert_tokenizer

TAMING_F16 = dict(block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=256,
                  vq_embed_dim=256, num_vq_embeddings=1024, sample_size=256,
                  down_block_types=("DownEncoderBlock2D",) * 4 + ("AttnDownEncoderBlock2D",),
                  up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 4)


def best_time(fn, repeats: int) -> tuple[float, object]:
    """Seconds of the fastest of `repeats` calls after one warm-up call, and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def reference_models(folder: Path) -> dict:
    """name -> (reference model, encode fn, decode fn, conversion source, its folder), weights saved under folder."""
    from diffusers import VQModel
    from transformers import JanusVQVAE, JanusVQVAEConfig

    torch.manual_seed(0)
    taming = VQModel(**TAMING_F16).eval()
    taming.save_pretrained(folder / "taming-f16")

    def taming_encode(x):
        _, _, (_, _, indices) = taming.quantize(taming.encode(x).latents)
        return indices.view(x.shape[0], x.shape[2] // 16, x.shape[3] // 16)

    def taming_decode(indices):
        shape = (*indices.shape, TAMING_F16["vq_embed_dim"])
        codes = taming.quantize.get_codebook_entry(indices.flatten(), shape)
        return taming.decode(codes, force_not_quantize=True).sample

    janus = JanusVQVAE(JanusVQVAEConfig(num_patches=16)).eval()
    with torch.no_grad():
        janus.quantize.embedding.weight.copy_(F.normalize(janus.quantize.embedding.weight, dim=1))
    janus.save_pretrained(folder / "llamagen-vq16")
    return {
        "taming-f16": (taming, taming_encode, taming_decode, "diffusers"),
        "llamagen-vq16": (janus, lambda x: janus.encode(x).image_tokens.view(x.shape[0], 16, 16),
                          lambda indices: janus.decode(indices.flatten(1)), "janus"),
    }


@torch.no_grad()
def measure(name: str, entry, folder: Path, images: torch.Tensor, repeats: int) -> dict:
    reference, ref_encode, ref_decode, source = entry
    ours = convert_tokenizer(source, folder / name)
    n = images.shape[0]
    row = {"parameters": sum(p.numel() for p in ours.parameters()), "grid": list(ours.config.grid_shapes[0]),
           "codebook_size": ours.config.codebook_size}
    outputs = {}
    for who, encode, decode in (("tessera", ours.encode, ours.decode), ("reference", ref_encode, ref_decode)):
        encode_s, indices = best_time(lambda: encode(images), repeats)
        decode_s, _ = best_time(lambda: decode(indices), repeats)
        row[who] = {"encode_ms_per_image": round(1000 * encode_s / n, 1),
                    "decode_ms_per_image": round(1000 * decode_s / n, 1)}
        outputs[who] = indices
    # Agreement: the share of equal code indices (a cell whose two nearest codes lie within float32 rounding of
    # each other may go either way), and both decoders on the same (the reference's) indices.
    row["index_agreement"] = float((outputs["tessera"] == outputs["reference"]).float().mean())
    row["differing_cells"] = int((outputs["tessera"] != outputs["reference"]).sum())
    row["max_abs_image_difference"] = float((ours.decode(outputs["reference"]) - ref_decode(outputs["reference"])).abs().max())
    for stage in ("encode", "decode"):
        row[f"{stage}_speed_vs_reference"] = round(
            row["reference"][f"{stage}_ms_per_image"] / row["tessera"][f"{stage}_ms_per_image"], 2)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4, help="images per encode / decode call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    images = torch.rand(args.batch_size, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {name: measure(name, entry, folder, images, args.repeats)
                   for name, entry in reference_models(folder).items()}
    results["setup"] = {"batch_size": args.batch_size, "resolution": 256, "threads": torch.get_num_threads(),
                        "torch": torch.__version__}
    print(json.dumps(results, indent=2))
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
