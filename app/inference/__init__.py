"""A trained model as a predictor (`predictor`): loading a .keras or .tflite file (`litert`), padding,
tiling and blending, test-time flips, class colours (`palette`), multi-label thresholds (`multilabel`), uncertainty
ranking (`ranking`) and writers for labelling tools (`annotation_writers`). Imports `app.runtime`, `app.config`."""
