"""Training a run: the model and its compilation (`model`), optimizer and schedule lengths (`optimizer`), the
fit loop (`loop`), the time budget and its guard (`budget`, `budget_guard`), Keras callbacks (`callbacks`),
data-parallel replicas (`distribute`), multi-label loss and scores (`multilabel`), run folders and resume (`runs`),
and Conv2D weight gradients as matmuls on AVX2-only CPUs (`conv_gradients`, TensorFlow only: its reason for
importing TensorFlow is in its docstring). Imports every folder before it except `app.planning`."""
