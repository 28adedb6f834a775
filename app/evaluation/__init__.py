"""Scoring and reporting: confusion matrices and score tables (`scores`), the evaluation report of a run
for single- and multi-label runs (`report`) and its figures (`plots`). Imports `app.runtime`, `app.config`,
`app.inference`."""
