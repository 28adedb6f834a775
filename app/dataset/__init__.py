"""A configured dataset read as training reads it: one scan of files and masks (`scanning`), the tf.data
pipelines training and export use (`prepared`), `app.check_data`'s checks (`checking`) and COCO/LabelMe imports
(`importing`). Imports `app.runtime`, `app.config`, `app.evaluation` (figures)."""
