"""Tokenizing a dataset: every image of a split -> sharded code-index files + manifest (prior.index_files).

Under `accelerate launch` each process encodes and writes its own shards (shard i goes to process
i mod P). A shard is the unit of resumption: a run killed at any point and started again with the same
settings keeps the finished shards, redoes the rest and ends with exactly the codes of an uninterrupted
run; a rerun with other settings into the same folder is refused. Read the result with
`prior.CodesDataset(output_dir)`.

With `streaming`, a Hugging Face split is read as a stream (nothing downloaded before it is read): shard i is
still rows [i·S, (i+1)·S) of the stream, each process reads the stream in order up to its last shard (passing
over the other processes' rows undecoded), and a rerun resumes the same way (finished shards are passed over).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from tqdm.auto import tqdm

from prior.index_files import CodesWriter
from tokenizer import load_tokenizer
from tokenizer.data import ImageDataConfig, ImageDataset, build_image_dataset
from tokenizer.models.loading import TOKENIZER_CLASSES, Tokenizer

from .encoding import encode_range


def _data_field(name: str):
    """A field with ImageDataConfig's default and help, so the data settings read alike in every script."""
    source = next(f for f in fields(ImageDataConfig) if f.name == name)
    return field(default=source.default, metadata=source.metadata)


@dataclass
class TokenizeDatasetConfig:
    """Which images to tokenize, where the index files go, and how the work is batched and sharded.

    There is no resolution (images are brought to the tokenizer's) and no random flip (codes must be
    reproducible for resumption); `flip` stores the codes of the mirrored images beside the originals.
    The data fields take their defaults and help from `ImageDataConfig`; help texts become the flags' help.
    """

    dataset: str = _data_field("dataset")
    output_dir: str = field(metadata={"help": "where the index files and manifest.json go"})
    split: str = _data_field("split")
    data_dir: str | None = _data_field("data_dir")
    resize_mode: str = _data_field("resize_mode")
    max_images: int | None = _data_field("max_images")
    streaming: bool = _data_field("streaming")
    batch_size: int = field(default=256, metadata={"help": "images encoded at once, per process"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers decoding images"})
    shard_size: int = field(default=10_000, metadata={"help": "inputs per shard (the unit of resumption)"})
    flip: bool = field(default=False, metadata={"help": "also store the codes of the mirrored images"})
    progress: bool = field(default=True, metadata={
        "help": "show a progress bar (main process only)", "off": "no progress bar (quiet logs)"})

    def __post_init__(self):
        if not self.output_dir:
            raise ValueError("output_dir is empty; expected the folder the index files go to")
        for name in ("batch_size", "shard_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected a positive integer")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers!r}: expected an integer >= 0")
        self.image_data(resolution=1)  # checks dataset, resize_mode and max_images now, not after loading

    def image_data(self, resolution: int) -> ImageDataConfig:
        """The images at `resolution` (the tokenizer's), without random flips."""
        return ImageDataConfig(dataset=self.dataset, split=self.split, resolution=resolution, data_dir=self.data_dir,
                               resize_mode=self.resize_mode, max_images=self.max_images, streaming=self.streaming)


def tokenize_dataset(tokenizer: Tokenizer | str | Path, config: TokenizeDatasetConfig) -> dict | None:
    """Encode every image of `config`'s split into index files under `config.output_dir`.

    `tokenizer` is a tokenizer (a VQGAN, or a VQVAE2 whose two grids go to one array per level) or a folder
    written by its `save_pretrained` (a model is moved to this process's device and put in eval mode). Prints the resume state, unreadable inputs and one JSON
    summary line (count, skipped, shards, dtype, grid, seconds, images/s, peak RSS) on the main process.
    Returns the manifest, with that summary under "summary", on the main process and None on the others.
    """
    # PartialState ignores ACCELERATE_USE_CPU (the Accelerator reads it): without it, processes started on CPU by
    # `accelerate launch` would each think they are alone and write every shard.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    model, tokenizer_dir = _load_tokenizer(tokenizer)
    model.require_codes("tokenizing a data set into index files")
    model = model.to(state.device).eval()
    data = config.image_data(model.config.autoencoder.resolution)
    dataset = build_image_dataset(data)
    if config.streaming and config.num_workers:
        # Each worker would start the stream again for every shard: one reader, in order, is the fast way.
        state.print(f"streaming: the stream is read in order by this process (num_workers {config.num_workers} -> 0)")
        config = dataclasses.replace(config, num_workers=0)
    writer = CodesWriter(config.output_dir, _plan(model, dataset, data, config))
    if state.is_main_process:
        writer.start()
    state.wait_for_everyone()

    done = writer.completed_shards()
    mine = [i for i in range(writer.num_shards) if i % state.num_processes == state.process_index and i not in done]
    if done:
        state.print(f"resuming: {len(done)} of {writer.num_shards} shards already complete")
    todo = sum(writer.shard_range(i)[1] - writer.shard_range(i)[0] for i in mine)
    started = time.perf_counter()
    _write_shards(model, dataset, writer, mine, todo, config, show_progress=config.progress and state.is_main_process)
    elapsed = time.perf_counter() - started
    state.wait_for_everyone()
    manifest = None
    if state.is_main_process:
        metadata = {"num_classes": dataset.num_classes, "class_names": list(dataset.class_names)}
        if tokenizer_dir is not None:  # named in the error when codes meet the wrong tokenizer
            metadata["tokenizer_dir"] = tokenizer_dir
        manifest = writer.write_manifest(metadata)
        if manifest["num_skipped"]:
            first = ", ".join(f"{n}: {r}" for n, r in manifest["skipped"][:5])
            print(f"skipped {manifest['num_skipped']} unreadable inputs (first: {first}); all are listed in the manifest")
        summary = _summary(config, manifest, todo, elapsed)
        print(json.dumps(summary))
        manifest = {**manifest, "summary": summary}  # not in manifest.json: it describes this run, not the codes
    state.wait_for_everyone()  # no process goes on (e.g. to train on the codes) before the manifest exists
    return manifest


def _load_tokenizer(tokenizer: Tokenizer | str | Path) -> tuple[Tokenizer, str | None]:
    """The model, and where it came from (a resolved folder, or the name as given) when that is known."""
    if isinstance(tokenizer, tuple(TOKENIZER_CLASSES.values())):
        return tokenizer, None
    if not isinstance(tokenizer, (str, Path)):
        raise ValueError(f"tokenizer of type {type(tokenizer).__name__}: expected a tokenizer or a tokenizer folder")
    path = Path(tokenizer)
    return load_tokenizer(tokenizer), str(path.resolve()) if path.is_dir() else str(tokenizer)


def _plan(model: Tokenizer, dataset: ImageDataset, data: ImageDataConfig, config: TokenizeDatasetConfig) -> dict:
    """Everything a rerun must share with an interrupted run for its finished shards to be reused."""
    sizes = model.config.codebook_sizes  # a one-level plan keeps the one-level manifest's `codebook_size`
    return {
        **({"codebook_size": sizes[0]} if len(sizes) == 1 else {"codebook_sizes": sizes}),
        "grid_shapes": [list(g) for g in model.config.grid_shapes],
        "shard_size": config.shard_size,
        "num_inputs": len(dataset),
        "has_labels": dataset.num_classes > 0,
        "flipped": config.flip,
        "tokenizer_fingerprint": model.fingerprint(),
        "source": {"dataset": data.dataset, "split": data.split, "resolution": data.resolution,
                   "resize_mode": data.resize_mode, "max_images": data.max_images},
    }


def _write_shards(model: Tokenizer, dataset: ImageDataset, writer: CodesWriter, shards: list[int], todo: int,
                  config: TokenizeDatasetConfig, show_progress: bool) -> None:
    with tqdm(total=todo, unit="img", desc="tokenize", disable=not show_progress) as bar:
        for index in shards:
            encoded = encode_range(model, dataset, *writer.shard_range(index), batch_size=config.batch_size,
                                   num_workers=config.num_workers, flip=config.flip, on_batch=bar.update)
            writer.write_shard(index, encoded.codes, encoded.labels, encoded.flipped, encoded.skipped)


def _summary(config: TokenizeDatasetConfig, manifest: dict, todo: int, elapsed: float) -> dict:
    # todo and elapsed are the main process's own share: images/s is per process.
    return {
        "output_dir": str(config.output_dir), "count": manifest["count"], "skipped": manifest["num_skipped"],
        "shards": len(manifest["shards"]), "dtype": manifest["dtype"],
        "grid": manifest["grid_shapes"][0] if len(manifest["grid_shapes"]) == 1 else manifest["grid_shapes"],
        "seconds": round(elapsed, 2), "images_per_s": round(todo / elapsed, 1) if elapsed > 0 and todo else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
