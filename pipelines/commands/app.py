"""`tessera app`: serve the web page (pipelines/app.py) over a pipeline: generate by class with the sampling
controls, reconstruct an uploaded picture and show its code grid, complete a picture from its first code rows.

    pip install 'tessera[app]'
    tessera app --pipeline outputs/demo/pipeline                      # then open http://127.0.0.1:7860
    tessera app --tokenizer runs/fmnist-vq --prior runs/fmnist-gpt --port 8000
    tessera app --pipeline outputs/demo/pipeline --share              # also a public gradio.live link

Runs on CPU (or --device cuda); Ctrl-C stops it.
"""

from __future__ import annotations

import argparse

from pipelines.commands.common import add_device_flag, add_model_flags, pipeline_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    page = parser.add_argument_group("the page")
    page.add_argument("--port", type=int, default=7860, help="the port to serve on (default: 7860)")
    page.add_argument("--host", default="127.0.0.1",
                      help="the address to listen on; 0.0.0.0 serves other machines too (default: 127.0.0.1)")
    page.add_argument("--share", action="store_true", help="also open a public link through Gradio's share servers")
    page.add_argument("--title", default="Tessera", help="the page's title (default: Tessera)")
    add_device_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from pipelines.app import build_app  # after the flags are checked: --help needs no Gradio

    page = build_app(pipeline_from_args(args), title=args.title)
    page.queue().launch(server_name=args.host, server_port=args.port, share=args.share)
