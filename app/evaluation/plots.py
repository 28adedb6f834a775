"""Matplotlib figures written to files; matplotlib picks Agg where there is no display and keeps a notebook's
inline backend."""
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np

from app.inference.palette import overlay  # noqa: E402
from app.runtime.outputs import write_figure  # noqa: E402


def plot_curves(history, path, monitor="val_miou"):
    """Loss and the monitored score per epoch, train and validation, from a history.csv DataFrame."""
    score = monitor.removeprefix("val_")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("loss", score)):
        for prefix, style in (("", "-"), ("val_", "o--")):
            if prefix + key in history:  # epochs without validation (validation_freq) hold NaN: left out
                points = history[["epoch", prefix + key]].dropna()
                axis.plot(points["epoch"] + 1, points[prefix + key], style, label=prefix + key)
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix, class_names, path):
    """Row-normalised confusion matrix (rows = truth, columns = prediction), class names on both axes."""
    matrix = np.asarray(matrix, np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    count = len(class_names)
    side = min(max(4.0, 0.5 * count + 2), 20)
    fig, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(count), class_names, rotation=45, ha="right")
    axis.set_yticks(range(count), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if count <= 20:
        for (row, column), value in np.ndenumerate(normalised):
            axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.5 else "black")
    fig.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)


def plot_class_shares(class_counts, path):
    """Bar chart of each class's pixel share per split, from `ScanResult.class_counts`."""
    table = class_counts.pivot_table(index="class", columns="split", values="pixels", sort=False)
    shares = table / table.sum().replace(0, 1)
    fig, axis = plt.subplots(figsize=(max(5.0, 0.6 * len(shares) + 2), 4))
    shares.plot.bar(ax=axis, rot=45)
    axis.set_ylabel("pixel share")
    axis.set_title("class pixel share per split")
    axis.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)


def plot_overlay_panel(image, truth, prediction, colours, class_names, path, title=""):
    """image | truth overlay | prediction overlay | error map (red: wrong, grey: void), with a class legend."""
    void = truth >= len(colours)
    errors = np.full(truth.shape + (3,), 255, np.uint8)
    errors[(truth != prediction) & ~void] = (220, 20, 60)
    errors[void] = (160, 160, 160)
    panels = {"image": image, "truth": overlay(image, truth, colours),
              "prediction": overlay(image, prediction, colours), "errors": errors}
    height, width = truth.shape
    fig, axes = plt.subplots(1, 4, figsize=(16, 4 * height / width + 1))
    for axis, (name, panel) in zip(axes, panels.items()):
        axis.imshow(panel, interpolation="nearest")
        axis.set_title(name)
        axis.axis("off")
    handles = [matplotlib.patches.Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(class_names, colours)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    write_figure(fig, path)
    plt.close(fig)
