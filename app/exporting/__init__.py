"""Export of a run to SavedModel and TFLite fp32/fp16/int8 (`exporters`), each gated by the mIoU parity of
the exported file against the Keras model (`parity`). Imports every folder before it except `app.planning`."""
