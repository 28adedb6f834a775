"""The logic behind the commands: each `app/<command>.py` is a thin CLI over `app/core/`, which notebooks reuse."""
