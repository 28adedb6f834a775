"""Durations as users type them (90s, 30m, 1h30m) and as logs print them."""
import re

from app.config.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value, key="train.time_budget"):
    """Seconds of a duration: a number of seconds or text like 90s, 30m, 1h, 1h30m, 1.5h; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text)
        if not text or "".join(n + u for n, u in parts) != text or (len(parts) > 1 and not all(u for _, u in parts)):
            raise ConfigError(f"{key} must be seconds or a duration like 90s, 30m, 1h or 1h30m; got {value!r}")
        seconds = sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)
    if not seconds > 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    return seconds


def format_duration(seconds):
    """90 -> '1m30s', 3600 -> '1h', 45 -> '45s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"
