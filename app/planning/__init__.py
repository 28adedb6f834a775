"""The fingerprint-based training plan: documented rules, each a pure function giving a value and its reason
(`rules`), and the plan applied under a config file and flags (`plan`). Imports `app.runtime`, `app.config`,
`app.dataset`."""
