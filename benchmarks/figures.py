"""Pictures for the benchmarks: rows of images, each with a label on its left."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid


def save_labelled_rows(rows: list[torch.Tensor], labels: list[str], path: str | Path, scale: int = 2,
                       label_width: int = 150) -> None:
    """Save rows of images (each (n, 3, H, W) in [-1, 1], the same n) one above the other, `labels[i]` left of
    row i, every pixel shown `scale` x `scale` times (32 px images are small on screen)."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels: expected one label per row")
    count = rows[0].shape[0]
    grid = make_grid((torch.cat(rows).float() + 1) / 2, nrow=count, padding=2, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    pixels = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    canvas = Image.new("RGB", (pixels.shape[1] + label_width, pixels.shape[0]), "white")
    canvas.paste(Image.fromarray(pixels), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = pixels.shape[0] / len(rows)
    for i, label in enumerate(labels):
        draw.text((6, int(i * row_height + row_height / 2) - 6), label, fill="black")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


@torch.no_grad()
def save_reconstruction_rows(tokenizers: dict, images: torch.Tensor, path: str | Path) -> None:
    """`images` (n, 3, H, W) in [-1, 1] on top, then each tokenizer's reconstructions of them, labelled by the
    keys of `tokenizers` (label -> a loaded VQGAN)."""
    rows = [images] + [model.eval().decode(model.encode(images)).clamp(-1, 1) for model in tokenizers.values()]
    save_labelled_rows(rows, ["original", *tokenizers], path)


def plot_fid_against_minutes(rows: list[dict], paper: dict[str, float], path: str | Path) -> None:
    """FID of each row (x: training minutes, one marker per recipe/sampling) with the paper's FIDs as
    horizontal lines: what an hour buys, what two buy."""
    from matplotlib.figure import Figure  # the object API needs no display

    figure = Figure(figsize=(7, 4.2), dpi=120)
    axes = figure.add_subplot()
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        series.setdefault(row["recipe"], []).append((row["train_seconds"] / 60, row["fid"]))
    for name, points in sorted(series.items()):
        minutes, fids = zip(*sorted(points))
        axes.plot(minutes, fids, marker="o", label=f"Tessera {name}")
    for i, (name, fid) in enumerate(paper.items()):
        axes.axhline(fid, linestyle="--", color=f"C{i + len(series)}", linewidth=1, label=f"{name}: {fid}")
    for minutes in (60, 120):
        axes.axvline(minutes, color="grey", linewidth=0.6)
    axes.set_xlabel("training minutes on 2 CPU cores (tokenizer + tokenizing + prior)")
    axes.set_ylabel("FID (2,000 samples vs test)")
    axes.set_title("Fashion-MNIST: FID against training time")
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
