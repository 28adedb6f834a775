"""What every command shares with the process it runs in: output folders and atomic writes (`outputs`),
SIGINT/SIGTERM handling (`interrupt`), quieting native libraries' log lines (`native_logs`), and the devices and
precision a run gets (`devices`). Imports only `data/`; nothing else in `app/`."""
