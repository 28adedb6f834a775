"""What every benchmark writes: its rows as `<out>.json` (with the machine and date) and `<out>.csv`."""
import datetime
import json
import pathlib
import platform

import pandas as pd


def write_runs(out, rows):
    """Write `rows` (dicts) to `out` with suffixes .json and .csv; return the two paths."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "platform": platform.platform(),
               "date": datetime.datetime.now().isoformat(timespec="seconds")}
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=2))
    pd.DataFrame(rows).to_csv(out.with_suffix(".csv"), index=False)
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.csv')}")
    return out.with_suffix(".json"), out.with_suffix(".csv")
