"""The lake's ground floor: what every Spark and pyarrow reader or writer of a table stands on.

The Spark session (`spark`), the partition commit protocol (`commit`), day partitions and their
paths (`partitions`: the only place a `ds=` folder name is made or read), the pyarrow readers
(`read`) and the names of the lake's tables with the feature-time rule (`schema`). It imports
nothing above it: only `reelflow.config`, `reelflow.paths` and `reelflow.state`.
"""
