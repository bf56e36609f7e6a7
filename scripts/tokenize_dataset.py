#!/usr/bin/env python
"""`tessera tokenize` as a script, for a clone without the installed command and for `accelerate launch`:
the same flags (`--help`)."""

if __name__ == "__main__":
    from pipelines.commands import run_subcommand

    run_subcommand("tokenize")
