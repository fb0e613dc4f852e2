"""progress.png: what a person looks at to see whether training works (loss, pseudo Dice, lr, time)."""

from __future__ import annotations

from pathlib import Path

from autopipe.files import atomic_path


def plot_progress(history: list[dict], path: Path, title: str) -> Path:
    """Four panels over epochs: train/validation loss, pseudo Dice (and its moving average), learning rate,
    seconds per epoch with the share spent waiting for data. `history` holds TrainingLog records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    axes[0].plot(epochs, [r["train_loss"] for r in history], label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in history], label="validation")
    axes[0].set_ylabel("loss (Dice + CE)")
    axes[1].plot(epochs, [r["pseudo_dice"] for r in history], ".", alpha=0.5, label="pseudo Dice")
    axes[1].plot(epochs, [r["ema_pseudo_dice"] for r in history], label="moving average (picks best)")
    axes[1].set_ylabel("lesion pseudo Dice")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, [r["lr"] for r in history])
    axes[2].set_ylabel("learning rate")
    axes[3].plot(epochs, [r["seconds"] for r in history], label="epoch")
    axes[3].plot(epochs, [r["seconds"] * r["data_wait"] for r in history], label="waiting for data")
    axes[3].set_ylabel("seconds")
    axes[3].set_xlabel("epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
