"""Matplotlib figures written to files (Agg backend, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history, path, monitor="val_miou"):
    """Loss and the monitored score per epoch, train and validation, from a history.csv DataFrame."""
    score = monitor.removeprefix("val_")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("loss", score)):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                axis.plot(history["epoch"] + 1, history[prefix + key], style, label=prefix + key)
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
