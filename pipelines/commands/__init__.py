"""The `tessera` command: one subcommand per module of this package, each with a `build_parser()` (its flags, for
--help and the tests) and a `main(argv)`. Only the chosen subcommand's module is imported, so `tessera --help`
answers at once. scripts/<name>.py runs the same subcommand (`accelerate launch` needs a script file)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from pipelines.cli import run_command

# subcommand → (module in this package, one line for `tessera --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train-tokenizer": ("train_tokenizer", "train an image tokenizer: VQ-GAN, two-level VQ-VAE-2 or VAE"),
    "tokenize": ("tokenize_dataset", "encode a data set split into code-index files"),
    "train-prior": ("train_prior", "train a GPT or PixelCNN prior over code-index files"),
    "sample": ("sample", "generate images with a pipeline (or a tokenizer and its prior) into a PNG grid"),
    "evaluate": ("evaluate", "measure a tokenizer's reconstructions or a pipeline's samples (FID, KID, ...)"),
    "convert": ("convert", "convert a published tokenizer (LlamaGen, taming, diffusers, Janus) into a Tessera one"),
    "demo": ("demo", "the whole two-stage flow on the built-in emoji set (13 minutes on a 2-core CPU)"),
    "app": ("app", "serve a web page that generates, reconstructs and completes images (pip install 'tessera[app]')"),
}


def subcommand_module(name: str) -> ModuleType:
    """The module behind `tessera <name>`."""
    return importlib.import_module(f"{__name__}.{SUBCOMMANDS[name][0]}")


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return ("usage: tessera <command> [flags]\n\nTwo-stage discrete image generation: tokenizers, priors over their "
            "codes, and the pipeline that chains them.\n\ncommands:\n" + "\n".join(lines) +
            "\n\n`tessera <command> --help` explains a command's flags.\n")


def run_subcommand(name: str, argv: list[str] | None = None) -> object:
    """Run `tessera <name> argv` (argv defaults to the process's own) with run_command's one-line errors."""
    try:
        module = subcommand_module(name)  # seconds of imports (torch, transformers): Ctrl-C may come here too
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    argv = sys.argv[1:] if argv is None else argv
    return run_command(lambda: module.main(argv), getattr(module, "RESUME_HINT", ""))


def main(argv: list[str] | None = None) -> None:
    """`tessera <command> [flags]`: the installed entry point (returns None: its caller exits with status 0)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(usage(), end="", file=sys.stderr)
        print(f"tessera: error: unknown command {name!r}; expected one of {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv[0] = f"tessera {name}"  # argparse names the program from it: "usage: tessera sample ..."
    run_subcommand(name, rest)
