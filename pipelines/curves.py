"""curves.png: a training run's metrics over steps, one panel per group of metrics (matplotlib, no display)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure  # the object API needs no display and no global pyplot state


def plot_curves(records: list[dict], panels: Mapping[str, list[str]], path: str | Path, title: str = "",
                markers: Mapping[str, int] | None = None) -> Path:
    """Draw `panels` (title → metric names) from JSON-lines records ({"step": s, name: value, ...}) into `path`.

    A metric is drawn where its value is a number; panels with nothing to draw are left out. `markers` (label →
    step, e.g. where the discriminator starts) become dashed vertical lines in every panel once the run has
    logged past them. Written through a temporary file, so a reader never sees half a PNG.
    """
    series = {
        name: [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
        for names in panels.values() for name in names
    }
    drawn = {t: [n for n in names if series[n]] for t, names in panels.items()}
    drawn = {t: names for t, names in drawn.items() if names}
    columns = min(3, max(1, len(drawn)))
    rows = max(1, math.ceil(len(drawn) / columns))
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, (panel, names) in zip(axes, drawn.items()):
        for name in names:
            steps, values = zip(*series[name])
            ax.plot(steps, values, label=name, marker="." if len(steps) < 30 else None)
        last_step = max(s for n in names for s, _ in series[n])
        for label, step in (markers or {}).items():
            if step <= last_step:
                ax.axvline(step, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(ax.get_legend_handles_labels()[1]) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=80)
    os.replace(tmp, path)
    return path
