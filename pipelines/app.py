"""The web page of `tessera app`: a Gradio page over one ImageGenerationPipeline, on CPU or GPU.

Three tabs: Generate (class by name, number of images, seed, temperature, top-k/top-p, guidance: a grid of images
and the first image's code grid per level), Reconstruct (an uploaded picture, its reconstruction and its code
grid per level as a coloured map) and Complete (an uploaded picture's first code rows kept, the rest drawn by the
prior). A vae pipeline has no codes and no prior options: Generate offers the temperature only, and there is no
Complete tab. The page's work is done by the plain functions below (PIL in, PIL out), which the tests call
without Gradio; Gradio itself is the optional extra `tessera[app]`, imported only by `build_app`.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from pipelines.generation import ImageGenerationPipeline

ANY_CLASS = "any (cycle through the classes)"
UNCONDITIONAL = "unconditional"
SHOWN_SIDE = 128  # small images are shown at least this many pixels wide (nearest-neighbour upscaling)
MAX_IMAGES = 64


def code_colours(codebook_size: int) -> np.ndarray:
    """(V, 3) uint8: one colour per code, hues spaced by the golden ratio so that codes close in index differ."""
    hues = (np.arange(codebook_size) * 0.6180339887) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.65 + 0.35 * (i % 2), 0.95 - 0.3 * (i % 3 == 2))]
                     for i, h in enumerate(hues)], dtype=np.uint8)


def code_map(indices: torch.Tensor, codebook_size: int, side: int = SHOWN_SIDE * 2) -> Image.Image:
    """A code grid (h, w) as a picture: each cell its code's colour, upscaled to about `side` pixels wide."""
    cells = code_colours(codebook_size)[indices.cpu().numpy()]  # (h, w, 3)
    scale = max(1, side // indices.shape[1])
    return Image.fromarray(cells).resize((indices.shape[1] * scale, indices.shape[0] * scale), Image.NEAREST)


def image_grid(images: torch.Tensor, nrow: int = 8) -> Image.Image:
    """Images (B, 3, H, W) in [0, 1] as one picture, small images upscaled (nearest) to be seen."""
    if images.shape[0] == 1:  # make_grid returns a lone image unpadded; pad it as it pads a batch
        grid = torch.nn.functional.pad(images[0], (2, 2, 2, 2), value=1.0)
    else:
        grid = make_grid(images, nrow=min(nrow, images.shape[0]), padding=2, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    scale = max(1, SHOWN_SIDE // images.shape[-1])
    picture = Image.fromarray(array)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def class_choices(pipe: ImageGenerationPipeline) -> list[str]:
    """What the class menu offers: every class by name (or index) after "any", or only "unconditional"."""
    if pipe.prior is None or pipe.prior.config.num_classes == 0:
        return [UNCONDITIONAL]
    names = pipe.class_names or [str(i) for i in range(pipe.prior.config.num_classes)]
    return [ANY_CLASS, *names]


def _labels(pipe: ImageGenerationPipeline, choice: str, num_images: int):
    if choice in (UNCONDITIONAL, None) or pipe.prior is None or pipe.prior.config.num_classes == 0:
        return None
    if choice == ANY_CLASS:
        return pipe.cycled_class_labels(num_images)
    return choice if pipe.class_names else int(choice)


def _sampling(pipe: ImageGenerationPipeline, temperature: float, top_k: int, top_p: float, guidance: float) -> dict:
    """The page's controls as pipeline arguments: top-k 0 and top-p 1 mean off; a vae takes the temperature only."""
    if pipe.prior is None:
        return {"temperature": float(temperature)}
    return {"temperature": float(temperature), "top_k": int(top_k) or None,
            "top_p": float(top_p) if float(top_p) < 1.0 else None, "guidance_scale": float(guidance)}


def _code_maps(pipe: ImageGenerationPipeline, indices, image: int = 0) -> list[Image.Image]:
    """The code grid of image `image` per level (none for a vae)."""
    if indices is None:
        return []
    grids = indices if isinstance(indices, (tuple, list)) else (indices,)
    return [code_map(grid[image], size) for grid, size in zip(grids, pipe.tokenizer.config.codebook_sizes)]


def generate(pipe: ImageGenerationPipeline, class_choice: str, num_images: int, seed: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, guidance: float = 1.0) -> tuple[Image.Image, list[Image.Image]]:
    """Generate tab: (the grid of `num_images` images, the first image's code grid per level)."""
    num_images = int(num_images)
    if not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"number of images {num_images}: expected 1 to {MAX_IMAGES}")
    generator = torch.Generator(pipe.device).manual_seed(int(seed))
    out = pipe(num_images, class_labels=_labels(pipe, class_choice, num_images), generator=generator,
               output_type="pt", progress=True, **_sampling(pipe, temperature, top_k, top_p, guidance))
    return image_grid(out.images), _code_maps(pipe, out.indices)


@torch.no_grad()
def reconstruct(pipe: ImageGenerationPipeline, picture: Image.Image) -> tuple[Image.Image, Image.Image, list[Image.Image]]:
    """Reconstruct tab: (the picture as the tokenizer sees it, its reconstruction, its code grid per level)."""
    pixels = pipe.image_tensor(picture, 1)  # (1, 3, R, R) in [-1, 1]
    tokenizer = pipe.tokenizer
    if tokenizer.num_levels == 0:  # a vae: through its latent mean
        grids, decoded = None, tokenizer.decode(tokenizer.encode(pixels))
    else:
        grids = tokenizer.encode_levels(pixels)
        decoded = tokenizer.decode_levels(grids)
    shown = [image_grid(((x.float().clamp(-1, 1) + 1) / 2).cpu()) for x in (pixels, decoded)]
    return shown[0], shown[1], _code_maps(pipe, grids)


def complete(pipe: ImageGenerationPipeline, picture: Image.Image, rows: int, class_choice: str, num_images: int,
             seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             guidance: float = 1.0) -> Image.Image:
    """Complete tab: `num_images` completions of the picture's first `rows` code rows (of the coarsest grid)."""
    if pipe.prior is None:
        raise ValueError("a vae pipeline has no prior to complete a picture with")
    num_images = int(num_images)
    generator = torch.Generator(pipe.device).manual_seed(int(seed))
    out = pipe(num_images, class_labels=_labels(pipe, class_choice, num_images), prefix=(picture, int(rows)),
               generator=generator, output_type="pt", progress=True,
               **_sampling(pipe, temperature, top_k, top_p, guidance))
    return image_grid(out.images)


def build_app(pipe: ImageGenerationPipeline, title: str = "Tessera"):
    """The Gradio Blocks page over `pipe` (gradio imported here: the optional extra `tessera[app]`)."""
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("the web page needs Gradio: pip install 'tessera[app]' (or pip install gradio)") from None
    has_prior = pipe.prior is not None
    rows = pipe.tokenizer.config.grid_shapes[0][0] if has_prior else 0

    def sampling_controls():
        """(temperature, top-k, top-p, guidance) sliders; a vae gets the temperature alone (the rest hidden)."""
        with gr.Row():
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
            top_k = gr.Slider(0, pipe.prior.config.codebook_size if has_prior else 1, value=0, step=1,
                              label="top-k (0 = off)", visible=has_prior)
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", visible=has_prior)
            guidance = gr.Slider(1.0, 8.0, value=1.0, step=0.25, label="guidance (1 = off)",
                                 visible=has_prior and pipe.prior.config.num_classes > 0)
        return [temperature, top_k, top_p, guidance]

    def run_generate(choice, count, seed, temperature, top_k, top_p, guidance, progress=gr.Progress(track_tqdm=True)):
        return generate(pipe, choice, count, seed, temperature, top_k, top_p, guidance)

    def run_complete(picture, kept, choice, count, seed, temperature, top_k, top_p, guidance,
                     progress=gr.Progress(track_tqdm=True)):
        if picture is None:
            raise gr.Error("upload a picture first")
        return complete(pipe, picture, kept, choice, count, seed, temperature, top_k, top_p, guidance)

    def run_reconstruct(picture):
        if picture is None:
            raise gr.Error("upload a picture first")
        return reconstruct(pipe, picture)

    choices = class_choices(pipe)
    with gr.Blocks(title=title) as page:
        gr.Markdown(f"# {title}\n{pipe.card_summary()}")
        with gr.Tab("Generate"):
            with gr.Row():
                choice = gr.Dropdown(choices, value=choices[0], label="class", interactive=len(choices) > 1)
                count = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="number of images")
                seed = gr.Number(0, precision=0, label="seed")
            controls = sampling_controls()
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                grid = gr.Image(label="samples", type="pil", elem_id="samples", format="png")
                maps = gr.Gallery(label="codes of the first image (one colour per code)", columns=2,
                                  visible=pipe.tokenizer.num_levels > 0, format="png")
            button.click(run_generate, [choice, count, seed, *controls], [grid, maps])
        with gr.Tab("Reconstruct"):
            with gr.Row():
                picture = gr.Image(label="your picture", type="pil", image_mode="RGB", elem_id="upload")
                seen = gr.Image(label="as the tokenizer sees it", type="pil", format="png")
                rebuilt = gr.Image(label="reconstruction", type="pil", elem_id="reconstruction", format="png")
            codes = gr.Gallery(label="its code grid per level (one colour per code)", columns=2,
                               visible=pipe.tokenizer.num_levels > 0, format="png")
            gr.Button("Reconstruct", elem_id="reconstruct").click(run_reconstruct, [picture], [seen, rebuilt, codes])
        if has_prior:
            with gr.Tab("Complete"):
                with gr.Row():
                    start = gr.Image(label="a picture to complete", type="pil", image_mode="RGB")
                    with gr.Column():
                        kept = gr.Slider(0, rows, value=rows // 2, step=1, label="code rows kept from the top")
                        complete_choice = gr.Dropdown(choices, value=choices[0], label="class")
                        complete_count = gr.Slider(1, MAX_IMAGES, value=8, step=1, label="number of completions")
                        complete_seed = gr.Number(0, precision=0, label="seed")
                complete_controls = sampling_controls()
                completed = gr.Image(label="completions", type="pil", format="png")
                gr.Button("Complete", variant="primary").click(
                    run_complete, [start, kept, complete_choice, complete_count, complete_seed, *complete_controls],
                    [completed])
    return page

