"""Command-line entry points (`python -m app.<command>`) and the run logic they share."""
