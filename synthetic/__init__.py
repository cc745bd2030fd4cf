"""Deterministic synthetic releases of the datasets, written in their native files.

The real releases are large and cannot ship with the project, so tests, demos and benchmarks
run on these generators instead. `synthetic.world` simulates the latent users, videos and
sessions; `synthetic.text` writes values, tables, bad rows and the manifest the way the real
files do; one module per dataset (`synthetic.kuairec`, `synthetic.kuairand`,
`synthetic.microlens`) turns a world into that release's files. `generate()` dispatches by
dataset name.

The dataset modules are imported when a dataset is generated, not with this package: the
command line reads GENERATORS to build its parser, and numpy and pandas would slow every
command.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Dataset (one of reelflow.names.DATASETS) -> "module:function" writing its release. A dataset
# without a generator (events: a user's own log) is not listed.
GENERATORS = {
    "kuairec": "synthetic.kuairec:generate_kuairec",
    "kuairand": "synthetic.kuairand:generate_kuairand",
    "microlens": "synthetic.microlens:generate_microlens",
}


def generate(
    dataset: str,
    out_dir: str | Path,
    scale: str = "small",
    seed: int = 0,
    variant: str | None = None,
) -> dict:
    """Write `dataset`'s native files (variant: KuaiRand "pure" | "1k" | "27k", default "pure";
    MicroLens "100k" | "50k", default "100k"; KuaiRec has none) into out_dir, plus the manifest;
    returns the manifest dict."""
    if dataset not in GENERATORS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {tuple(GENERATORS)}")
    if dataset == "kuairec" and variant is not None:
        raise ValueError(f"KuaiRec has no variants, got {variant!r}")
    module, function = GENERATORS[dataset].split(":")
    writer = getattr(importlib.import_module(module), function)
    if not variant:  # the dataset's default variant
        return writer(out_dir, scale=scale, seed=seed)
    return writer(out_dir, scale=scale, seed=seed, variant=variant)
