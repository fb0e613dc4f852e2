"""progress.png: what a person looks at to see whether training works (loss, pseudo Dice, lr, time)."""

from __future__ import annotations

import math
from pathlib import Path

from autopipe.files import save_png, write_json


def write_progress(history: list[dict], folder: Path, title: str) -> None:
    """progress.json (nan as null) and progress.png of a training run, in `folder`."""
    plain = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in history]
    write_json(folder / "progress.json", plain)
    plot_progress(history, folder / "progress.png", title)


def plot_progress(history: list[dict], path: Path, title: str) -> Path:
    """Four panels over epochs: train/validation loss (and a joint model's hand-function loss), pseudo Dice (and
    its moving average), learning rate, seconds per epoch with the share spent waiting for data. `history` holds
    TrainingLog records; a curve whose key the records lack (a reconstruction model has no Dice) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]

    def curve(ax, key: str, *style: str, scale: str | None = None, **kwargs) -> None:
        if history and key in history[0] and (scale is None or scale in history[0]):
            values = [r[key] * (r[scale] if scale else 1) for r in history]
            ax.plot(epochs, [float("nan") if v is None else v for v in values], *style, **kwargs)

    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    curve(axes[0], "train_loss", label="train")
    curve(axes[0], "val_loss", label="validation")
    curve(axes[0], "train_hand_loss", "--", label="train, hand function")
    curve(axes[0], "val_hand_loss", "--", label="validation, hand function")
    axes[0].set_ylabel("loss")
    curve(axes[1], "pseudo_dice", ".", alpha=0.5, label="pseudo Dice")
    curve(axes[1], "ema_pseudo_dice", label="moving average (picks best)")
    axes[1].set_ylabel("lesion pseudo Dice")
    axes[1].set_ylim(0, 1)
    curve(axes[2], "lr")
    axes[2].set_ylabel("learning rate")
    curve(axes[3], "seconds", label="epoch")
    curve(axes[3], "seconds", scale="data_wait", label="waiting for data")
    axes[3].set_ylabel("seconds")
    axes[3].set_xlabel("epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
