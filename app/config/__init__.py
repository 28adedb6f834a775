"""The run configuration: every key declared once with its type, default, allowed values and meaning
(`schema`), read from YAML files and `--set` overrides (`loading`), durations such as `30m` (`durations`).
Imports `app.runtime`, `data/` and `models/` only."""
