"""The lake's ground floor: what every Spark and pyarrow reader or writer of a table stands on.

`spark` the Spark session; `commit` the partition commit protocol; `partitions` day partitions
(the only place a `ds=` folder name is made or read back into its day); `read` the pyarrow
readers; `schema` the tables' names, the unified schema and the feature-time rule. It imports
nothing above it: only `reelflow.config`, `reelflow.paths` and `reelflow.state`.
"""
