"""Model cards: the README.md every saved folder carries (and the Hub shows): YAML metadata (library_name, tags,
datasets, metrics, pipeline_tag), then what the model is, its picture when the run drew one, the metrics it
measured, the training config and the lines that load it.

A save passes what its run knows as `model_card_kwargs` (huggingface_hub's name): `metrics` {name: value},
`datasets` (data set names as the commands take them), `train_config` (a dict), `grid` (a PNG, copied into the
folder as grid.png so that the card shows it on the Hub too), `grid_caption`, `name` (the Hub id or folder the
loading snippet names: the repo id on a push, else the folder as given) and `snippet` (loading code in place of
the class's own, with `{name}`: a pipeline's parts are loaded through the pipeline). All are optional.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

GRID_NAME = "grid.png"
CARD_NAME = "README.md"
# Built-in data set names → their Hub data set (the card's `datasets:` takes Hub ids; emoji has none).
HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist"}
CARD_KEYS = ("metrics", "datasets", "train_config", "grid", "grid_caption", "name", "snippet")


def hub_dataset_ids(names: Sequence[str]) -> list[str]:
    """The Hub ids among `names`: built-in names mapped, "owner/name" ids kept, local folders and the rest left out."""
    ids = []
    for name in names:
        name = HUB_DATASETS.get(name, name)
        if name.count("/") == 1 and not Path(name).exists() and name not in ids:
            ids.append(name)
    return ids


def class_list(names: Sequence[str], most: int = 12) -> str:
    """Class names for a card or a page, the first and last few of a long list: "tench, goldfish, ... (1,000)"."""
    names = list(names)
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[: most - 2])}, ..., {', '.join(names[-2:])} ({len(names):,} in all)"


def _metric_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_model_card(folder: Path, card_data: ModelCardData, title: str, summary: str, class_snippet: str,
                     **content) -> ModelCard:
    """Write `folder`/README.md (replacing an older card) from the class's card data and a run's `content` (the
    keys in CARD_KEYS); copies the grid in as grid.png. Returns the card."""
    unknown = sorted(set(content) - set(CARD_KEYS))
    if unknown:
        raise ValueError(f"model card fields {unknown}: expected some of {list(CARD_KEYS)}")
    metrics: Mapping = content.get("metrics") or {}
    datasets = [name for name in content.get("datasets") or [] if name]
    data = ModelCardData(**{k: v for k, v in card_data.to_dict().items() if v is not None})
    data.datasets = hub_dataset_ids(datasets) or None
    data.metrics = sorted(metrics) or None
    sections = [f"# {title}", summary]
    if content.get("grid") is not None:
        grid = Path(content["grid"])
        if not grid.is_file():
            raise FileNotFoundError(f"model card grid {grid} is missing")
        if grid.resolve() != (folder / GRID_NAME).resolve():
            shutil.copyfile(grid, folder / GRID_NAME)
        caption = content.get("grid_caption") or ""
        sections.append(f"![{caption or 'grid'}]({GRID_NAME})\n\n{caption}".rstrip())
    elif (folder / GRID_NAME).is_file():
        (folder / GRID_NAME).unlink()  # an earlier save's grid: not this model's
    if datasets:
        sections.append("Trained on: " + ", ".join(f"`{name}`" for name in datasets) + ".")
    if metrics:
        rows = "\n".join(f"| {name} | {_metric_text(value)} |" for name, value in metrics.items())
        sections.append(f"## Metrics\n\n| metric | value |\n|---|---|\n{rows}")
    code = (content.get("snippet") or class_snippet).replace("{name}", str(content.get("name") or folder))
    sections.append(f"## Use\n\n```python\n{code}\n```")
    if content.get("train_config") is not None:
        config = json.dumps(content["train_config"], indent=2, default=str)
        sections.append(f"## Training config\n\n```json\n{config}\n```")
    sections.append("Made with Tessera: two-stage discrete image generation (an image tokenizer and a prior over "
                    "its codes).")
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    card.save(folder / CARD_NAME)
    return card


class ModelCardMixin:
    """Before huggingface_hub's mixin in a class's bases: save_pretrained (and so push_to_hub, which saves first)
    writes Tessera's card from `model_card_kwargs` (CARD_KEYS) in place of the mixin's generic one. A class says
    what it is in `card_title()`, `card_summary()` and `card_snippet()` (Python with `{name}` for the folder or id)."""

    def card_title(self) -> str:
        return f"Tessera {type(self).__name__}"

    def card_summary(self) -> str:
        raise NotImplementedError

    def card_snippet(self) -> str:
        cls = type(self)
        package = cls.__module__.split(".")[0]
        return f'from {package} import {cls.__name__}\n\nmodel = {cls.__name__}.from_pretrained("{{name}}")'

    def save_pretrained(self, save_directory: str | Path, *, config=None, repo_id: str | None = None,
                        push_to_hub: bool = False, model_card_kwargs: dict | None = None, **push_to_hub_kwargs):
        """The mixin's save_pretrained, then Tessera's card; `name` defaults to the folder as given. The card's
        name is kept in `card_name` meanwhile, for the folders of a pipeline's parts."""
        save_directory = Path(save_directory)
        content = {"name": str(save_directory), **(model_card_kwargs or {})}
        self.card_name = content["name"]
        super().save_pretrained(save_directory, config=config)
        write_model_card(save_directory, self._hub_mixin_info.model_card_data, self.card_title(),
                         self.card_summary(), self.card_snippet(), **content)
        if push_to_hub:
            return self.push_to_hub(repo_id or save_directory.name, config=config,
                                    model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's push_to_hub; the card's loading snippet names the repo."""
        return super().push_to_hub(repo_id, model_card_kwargs={"name": repo_id, **(model_card_kwargs or {})},
                                   **kwargs)
