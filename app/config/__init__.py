"""The run configuration: every key declared once with its type, default, allowed values and meaning (`schema`,
on the value types of `types`), read from YAML files and `--set` overrides (`loading`, which also reads the
config.yaml of earlier runs), durations such as `30m` (`durations`). Imports `data/` only."""
