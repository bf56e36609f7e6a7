"""Command lines built from the typed configs, and the one way every script reports a user's mistake.

`config_parser(TrainTokenizerConfig)` turns every leaf field of a (nested) config dataclass into a flag, so the
defaults live once, in the dataclass. A field's flag is its name unless its metadata says `flag=...`; two fields
may share a flag only when both name it explicitly (`resolution` sets the data's and the model's). Booleans get
`--name` and `--no_name` (a field that defaults to True says in its `off` metadata what `--no_name` does); tuples
take comma-separated values; `none` clears an optional value.

`--config run.json` starts from a saved config (e.g. the `train_config.json` a run writes); flags given beside
it override its values; fields in neither keep the dataclass default. A config class with a static method
`upgrade_settings(dict) -> dict` reads files written in its older layouts through it. Where the parser is given
presets (named partial configs as plain dicts, e.g. tokenizer.training.presets), `--preset NAME` lays one under the config
file and flags.

`run_command(main)` turns the project's own ValueError / FileNotFoundError into `error: ...` on stderr with exit
status 2, as argparse does for bad flags; any other exception keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera_hub.configs import config_from_dict, field_default, read_json_object, unwrap_optional

CONFIG_FLAG = "config"


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flag: the field paths it sets, how to parse its text, its default and help."""

    flag: str
    paths: tuple[tuple[str, ...], ...]
    kind: type  # int, float, str, bool or tuple
    optional: bool
    item: type | None  # element type of a tuple
    default: Any
    help: str
    off_help: str = ""  # a bool's --no_<flag>: what turning it off does


def _leaves(cls: type, prefix: tuple[str, ...] = (), flag_prefix: str = "",
            help_prefix: str = "") -> list[tuple[str, tuple[str, ...], Any, bool, Any, dict]]:
    """(flag, path, type, optional, default, metadata) for every non-dataclass field, depth first. A nested
    dataclass field with `flag_prefix` metadata puts that prefix before its fields' flags (a second quantiser's
    `--top_codebook_size` beside the first one's `--codebook_size`), and its own `help` before theirs (so the
    two read apart in --help)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        annotation, optional = unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(annotation):
            own = f"{f.metadata['help']}: " if "flag_prefix" in f.metadata and "help" in f.metadata else ""
            out.extend(_leaves(annotation, prefix + (f.name,), flag_prefix + f.metadata.get("flag_prefix", ""),
                               help_prefix + own))
        else:
            flag = flag_prefix + f.metadata.get("flag", f.name)
            meta = dict(f.metadata)
            if flag_prefix and "flag" in meta:
                meta["flag"] = flag
            if help_prefix:
                meta["help"] = help_prefix + meta.get("help", "")
                if "off" in meta:
                    meta["off"] = help_prefix + meta["off"]
            out.append((flag, prefix + (f.name,), annotation, optional, field_default(f), meta))
    return out


def config_leaves(cls: type) -> dict[str, Leaf]:
    """flag → Leaf for a config dataclass; a flag shared by fields that do not all declare it is a bug here."""
    grouped: dict[str, list] = {}
    for entry in _leaves(cls):
        grouped.setdefault(entry[0], []).append(entry)
    leaves = {}
    for flag, entries in grouped.items():
        if len(entries) > 1 and not all(meta.get("flag") == flag for *_, meta in entries):
            raise TypeError(f"{cls.__name__}: fields {['.'.join(e[1]) for e in entries]} would share --{flag}; "
                            f"give them distinct `flag` metadata, or the same one on purpose")
        _, path, annotation, optional, default, meta = entries[0]
        origin = typing.get_origin(annotation)
        kind, item = (tuple, typing.get_args(annotation)[0]) if origin is tuple else (annotation, None)
        if kind not in (int, float, str, bool, tuple):
            raise TypeError(f"{cls.__name__}.{'.'.join(path)}: type {annotation} has no command-line form")
        if kind is bool and default is True and not meta.get("off"):
            raise TypeError(f"{cls.__name__}.{'.'.join(path)}: a bool that defaults to True needs metadata 'off', "
                            f"the help of --no_{flag} (what turning it off does)")
        leaves[flag] = Leaf(flag, tuple(e[1] for e in entries), kind, optional, item, default, meta.get("help", ""),
                            meta.get("off", ""))
    return leaves


def _text_to_value(leaf: Leaf) -> Callable[[str], Any]:
    def parse(text: str):
        if leaf.optional and text.lower() == "none":
            return None
        try:
            if leaf.kind is tuple:
                return tuple(leaf.item(v) for v in text.split(","))
            return leaf.kind(text)
        except ValueError:
            names = {int: "integer", float: "number", str: "text"}
            expected = f"comma-separated {names[leaf.item]}s" if leaf.kind is tuple else f"a {names[leaf.kind]}"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}" + (" or 'none'" if leaf.optional else ""))
    return parse


def _show(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def config_parser(cls: type, description: str | None = None, groups: dict[str, str] | None = None,
                  default_group: str = "training", presets: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with `--config FILE` and one flag per leaf of `cls`, grouped by top-level field.

    groups: top-level nested field name → group title; other leaves go under `default_group`.
    presets: name → partial config dict; adds `--preset NAME` (parse_config applies it first).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument(f"--{CONFIG_FLAG}", metavar="FILE",
                        help="a saved config (e.g. the train_config.json of a run) to start from; flags override it")
    parser.presets = dict(presets or {})
    if presets:
        parser.add_argument("--preset", choices=sorted(presets),
                            help="a named recipe to start from (under --config and the flags)")
    sections: dict[str, argparse._ArgumentGroup] = {}
    for leaf in config_leaves(cls).values():
        nested = len(leaf.paths[0]) > 1
        title = (groups or {}).get(leaf.paths[0][0], default_group) if nested else default_group
        group = sections.setdefault(title, parser.add_argument_group(title))
        text = f"{leaf.help} (default: {_show(leaf.default)})".strip()
        if leaf.kind is bool:
            on, off = (f"--{leaf.flag}", f"--no_{leaf.flag}")
            group.add_argument(on, dest=leaf.flag, action="store_const", const=True,
                               help=text if not leaf.default else argparse.SUPPRESS)
            group.add_argument(off, dest=leaf.flag, action="store_const", const=False,
                               help=leaf.off_help or text if leaf.default else argparse.SUPPRESS)
        else:
            metavar = {int: "N", float: "X", str: "TEXT", tuple: "A,B,..."}[leaf.kind]
            group.add_argument(f"--{leaf.flag}", dest=leaf.flag, type=_text_to_value(leaf), metavar=metavar, help=text)
    return parser


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file; expected a JSON config such as a run's train_config.json")
    return read_json_object(path, f"--config {path}")


def merge_settings(base: dict, override: dict) -> dict:
    """`override` laid over `base`, section by section (nested dicts merge; other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (merge_settings(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def preset_settings(presets: dict[str, dict], name: str) -> dict:
    if name not in presets:
        raise ValueError(f"preset {name!r}: expected one of {sorted(presets)}")
    return json.loads(json.dumps(presets[name]))  # a deep copy; the table stays untouched


def config_from_preset(cls: type, presets: dict[str, dict], name: str, *overlays: dict | None) -> Any:
    """A `cls` config from the preset `name` with partial config dicts laid over it in order (later ones win)."""
    settings = preset_settings(presets, name)
    for overlay in overlays:
        settings = merge_settings(settings, overlay or {})
    return config_from_dict(cls, settings)


def _has(data: dict, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _get(data: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _without(data: dict, path: tuple[str, ...]) -> dict:
    """A copy of `data` without the value at `path`."""
    data = json.loads(json.dumps(data))
    inner = data
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return data


def _without_derived_values(cls: type, data: dict) -> dict:
    """`data` (a saved config, say) without the values its config class derived from other fields
    (`cls.derived_paths`: the discriminator's start from max_steps), so that they are derived anew from the flags
    laid over it. A value that differs from what its own file derives was set on purpose and stays."""
    for path in getattr(cls, "derived_paths", ()):
        if not _has(data, path) or _get(data, path) is None:
            continue
        try:
            derived = config_from_dict(cls, _without(data, path))
            if _get(dataclasses.asdict(derived), path) == _get(data, path):
                data = _without(data, path)
        except ValueError:
            pass  # a config incomplete without the flags; its values stay as given
    return data


def parse_config(cls: type, parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[Any, argparse.Namespace]:
    """(config, namespace): the config from defaults ← --preset ← --config file ← the flags given; the namespace
    holds the parsed flags (and any extra arguments the caller added to the parser)."""
    args = parser.parse_args(argv)
    data = read_config_file(args.config) if getattr(args, CONFIG_FLAG, None) else {}
    if hasattr(cls, "upgrade_settings"):  # a file written in an older layout of the config
        data = cls.upgrade_settings(data)
    if getattr(args, "preset", None):
        data = merge_settings(preset_settings(getattr(parser, "presets", {}), args.preset), data)
    data = _without_derived_values(cls, data)
    leaves = config_leaves(cls)
    for flag, leaf in leaves.items():
        if hasattr(args, flag):
            for path in leaf.paths:
                _set(data, path, getattr(args, flag))
    missing = [f"--{flag}" for flag, leaf in leaves.items()
               if leaf.default is dataclasses.MISSING and not _has(data, leaf.paths[0])]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}: give it as a flag or in --config")
    return config_from_dict(cls, data), args


def comma_choices(allowed) -> Callable[[str], list[str]]:
    """An argparse `type` for a comma-separated list of names, each one of `allowed` ('' gives [])."""
    def parse(text: str) -> list[str]:
        names = [name for name in text.split(",") if name]
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown}: expected some of {list(allowed)}")
        return names

    return parse


# Errors that are the user's to fix (a bad value, a missing or misplaced file): one line, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


RESUME_TRAINING = "run the same command with --resume_from_checkpoint latest to continue from the last checkpoint"


def run_command(main: Callable[[], Any], resume_hint: str = "") -> Any:
    """Run a script's main; the user's errors become `error: ...` (exit status 2), Ctrl-C one line (exit status
    130, followed by `resume_hint`: how to continue), anything else keeps its traceback."""
    try:
        return main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted" + (f": {resume_hint}" if resume_hint else ""), file=sys.stderr)
        raise SystemExit(130) from None


def output_file(path: str | Path, flag: str) -> Path:
    """A file to be written at the end of a command, checked now: its folder is made, and a path under an
    existing file (or naming a folder) is an error before any work is done."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def emit_json(result: Any, path: str | Path | None = None) -> None:
    """A benchmark's or script's result: indented JSON on stdout, and the same text in `path` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for counts and sizes: an integer >= `minimum`, or argparse's own one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


positive_int = int_at_least(1)
