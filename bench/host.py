"""What machine a bench ran on, without importing torch (bench/pipeline_scale.py drives the
pipeline from outside and needs none of it)."""

from __future__ import annotations

from pathlib import Path


def cpu() -> dict:
    """What the cores are: the same "2 cores" have differed between machines here by about 2x
    (the release's generation took 282 s on one and 131 s on another), so a time is read
    beside the machine it ran on."""
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if (
            key.strip() in ("model name", "cpu family", "model", "cpu MHz")
            and key.strip() not in info
        ):
            info[key.strip()] = value.strip()
    return info
