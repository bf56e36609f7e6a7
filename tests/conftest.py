"""Shared test helpers: tiny tokenizers and priors, image folders, a codes folder, command lines as subprocesses.

The builders are plain functions (tests and the `python -c` programs of the kill tests import them from
`tests.conftest`); the fixtures below wrap the ones many modules use alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prior import CodesWriter, GPTPrior, GPTPriorConfig, PixelCNNPrior, PixelCNNPriorConfig
from tokenizer import VQGAN, AutoencoderConfig, VAEConfig, VQGANConfig, VQVAE2Config
from tokenizer.models.base import AUTOENCODER_FIELDS
from tokenizer.models.quantizer import QuantizerConfig

ROOT = Path(__file__).resolve().parents[1]
PRIORS = {"gpt": (GPTPrior, GPTPriorConfig), "pixelcnn": (PixelCNNPrior, PixelCNNPriorConfig)}


# --- models -------------------------------------------------------------------------------------------------


def tokenizer_config(config_class: type, settings: dict):
    """`config_class` from flat settings: the autoencoder's fields and the architecture's own."""
    shared = {name: value for name, value in settings.items() if name in AUTOENCODER_FIELDS}
    own = {name: value for name, value in settings.items() if name not in shared}
    return config_class(AutoencoderConfig(**shared), **own)


def tiny_vqgan_config(factor: int = 4, resolution: int = 16, use_attention: bool = False, **quantizer) -> VQGANConfig:
    """Widths of 8 and a 32-entry codebook of 4-dim codes; `quantizer` overrides QuantizerConfig fields."""
    settings = dict(codebook_size=32, code_dim=4, kmeans_init=False)
    settings.update(quantizer)
    autoencoder = AutoencoderConfig(downsample_factor=factor, resolution=resolution, channels=8, z_channels=8,
                                    use_attention=use_attention)
    return VQGANConfig(autoencoder, QuantizerConfig(**settings))


def tiny_vqvae2_config(resolution: int = 16, top_factor: int = 2, **overrides) -> VQVAE2Config:
    """Widths of 8; a 32-code bottom codebook of 4-dim codes and a 16-code top codebook of 3-dim codes;
    `overrides`: fields of the autoencoder or of VQVAE2Config."""
    settings = dict(
        resolution=resolution, downsample_factor=4, top_downsample_factor=top_factor,
        channels=8, z_channels=8, quantizer=QuantizerConfig(codebook_size=32, code_dim=4, kmeans_init=False),
        top_quantizer=QuantizerConfig(codebook_size=16, code_dim=3, kmeans_init=False),
    )
    return tokenizer_config(VQVAE2Config, {**settings, **overrides})


def tiny_vae_config(**overrides) -> VAEConfig:
    """16 px, widths of 8, a (3, 4, 4) latent; `overrides`: fields of the autoencoder or of VAEConfig."""
    settings = dict(resolution=16, downsample_factor=4, channels=8, z_channels=8, latent_channels=3)
    return tokenizer_config(VAEConfig, {**settings, **overrides})


def tiny_vqgan(resolution: int = 16, codebook_size: int = 32, seed: int = 0) -> VQGAN:
    """A randomly initialised (seeded) tokenizer in eval mode: grid resolution / 4."""
    torch.manual_seed(seed)
    return VQGAN(tiny_vqgan_config(resolution=resolution, codebook_size=codebook_size)).eval()


def tiny_prior(kind: str = "gpt", seed: int = 0, **settings) -> torch.nn.Module:
    """The "tiny" preset of a GPT or PixelCNN prior in eval mode; `settings` go to its config."""
    model_cls, config_cls = PRIORS[kind]
    torch.manual_seed(seed)
    return model_cls(config_cls.from_preset("tiny", **settings)).eval()


def tiny_prior_for(tokenizer: VQGAN, kind: str = "gpt", seed: int = 0, **settings) -> torch.nn.Module:
    """A tiny prior over `tokenizer`'s codes (its codebook, grid and fingerprint), so the two make a pipeline."""
    matching = dict(codebook_size=tokenizer.config.codebook_size, grid_shape=tuple(tokenizer.config.grid_shapes[0]),
                    tokenizer_fingerprint=tokenizer.fingerprint())
    return tiny_prior(kind, seed, **{**matching, **settings})


# --- data ---------------------------------------------------------------------------------------------------


@pytest.fixture
def eager_compile(monkeypatch) -> list[dict]:
    """torch.compile through dynamo's eager backend: the code is still traced as one graph (fullgraph errors
    still raise) but nothing is compiled, so a test runs at CPU speed; returns the calls' keyword arguments."""
    real_compile, calls = torch.compile, []

    def compile_eagerly(fn, **kwargs):
        calls.append(kwargs)
        return real_compile(fn, **{**kwargs, "mode": None, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    return calls


def write_images(root: Path, count: int, size: int = 16, classes: tuple[str, ...] = (), seed: int = 0) -> Path:
    """`count` random RGB PNGs (size x size) named 0.png, 1.png, ... in each class sub-folder, or flat in root."""
    rng = np.random.default_rng(seed)
    for folder in [root / c for c in classes] or [root]:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def make_codes(directory, n=25, shard_size=10, labels=True, flipped=False, codebook_size=50, fingerprint="ab" * 32):
    """A codes folder of n random (2, 3) grids with 4 classes, written through CodesWriter; returns (codes, labels)."""
    rng = np.random.default_rng(0)
    writer = CodesWriter(directory, {
        "codebook_size": codebook_size, "grid_shapes": [[2, 3]], "shard_size": shard_size, "num_inputs": n,
        "has_labels": labels, "flipped": flipped, "tokenizer_fingerprint": fingerprint,
    })
    writer.start()
    codes = rng.integers(0, codebook_size, (n, 2, 3))
    label_values = rng.integers(0, 4, n)
    for i in range(writer.num_shards):
        start, stop = writer.shard_range(i)
        writer.write_shard(i, codes[start:stop], label_values[start:stop] if labels else None,
                           codes[start:stop, :, ::-1] if flipped else None, skipped=[])
    writer.write_manifest({"num_classes": 4 if labels else 0, "class_names": ["a", "b", "c", "d"] if labels else []})
    return codes, label_values


# --- command lines ------------------------------------------------------------------------------------------


def script_command(name: str, *args) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / name), *map(str, args)]


def start_script(name: str, *args, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start scripts/<name> as its own process (text stdout and stderr piped; `env` added to the environment);
    see run_script."""
    return subprocess.Popen(script_command(name, *args), cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_script(name: str, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run scripts/<name> as a user would (each run pays ~5 s of imports: keep them few).

    With check, a non-zero exit fails the test with the script's stderr.
    """
    proc = start_script(name, *args)
    stdout, stderr = proc.communicate(timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{stderr[-4000:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A saved tiny tokenizer (16x16 images -> 4x4 codes of 64 entries), shared read-only by every test."""
    path = tmp_path_factory.mktemp("tokenizer")
    tiny_vqgan(resolution=16, codebook_size=64).save_pretrained(path)
    return path
