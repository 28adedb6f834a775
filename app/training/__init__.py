"""Training a run: the model and its compilation (`model`), optimizer and schedule lengths (`optimizer`), the
fit loop (`loop`), the time budget and its guard (`budget`, `budget_guard`), Keras callbacks (`callbacks`),
data-parallel replicas (`distribute`), multi-label loss and scores (`multilabel`), run folders and resume (`runs`).
Imports every folder before it except `app.planning`."""
