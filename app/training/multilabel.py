"""Training multi-label runs (`data.mask: multilabel`): the loss and metrics, and the final scores at a threshold."""
import numpy as np

from app.evaluation.scores import multilabel_scores_table, per_class_dict
from app.inference.multilabel import DEFAULT_THRESHOLD, sigmoid
from models.losses import get_multilabel_loss
from models.multilabel_metrics import multilabel_counts, multilabel_metrics


def loss_and_metrics(config, class_names, class_weights=None):
    """(loss, metrics) of a multi-label run: the config's loss name in its multi-label form (ce -> binary
    cross-entropy, dice_ce -> Dice + BCE, dice, focal, tversky) and per-class IoU/Dice/precision/recall."""
    loss = get_multilabel_loss(config.loss.name, num_classes=len(class_names),
                               class_weights=None if class_weights is None else list(map(float, class_weights)),
                               **config.loss.loss_options())
    return loss, multilabel_metrics(len(class_names), class_names, DEFAULT_THRESHOLD)


def final_metrics(model, prepared, threshold=DEFAULT_THRESHOLD):
    """Scores of `model` on the validation split (training split when there is none), as a JSON-able dict."""
    dataset, split = prepared.evaluation()
    num_classes = prepared.encoding.num_classes
    counts = np.zeros((num_classes, 3), np.int64)
    positives, pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    for batch in dataset.as_numpy_iterator():
        probabilities = sigmoid(model.predict_on_batch(batch[0]))
        counts += multilabel_counts(batch[1], probabilities, threshold)
        positives += (batch[1] == 1).reshape(-1, num_classes).sum(0)
        pixels += ((batch[1] == 0) | (batch[1] == 1)).reshape(-1, num_classes).sum(0)
    table, summary = multilabel_scores_table(counts, prepared.class_names, positives, pixels)
    summary["split"] = split
    summary["threshold"] = threshold
    summary["per_class"] = per_class_dict(table)
    return summary
