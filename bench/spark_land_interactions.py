"""The Spark side of bench/normalize.py, run through `spark-submit` as a cluster would:
parse KuaiRec's big_matrix.csv with reelflow's reader (row rules, duplicates, UTC day) and
write it partitioned by day, exactly as the landing step does."""

import sys
import time
from pathlib import Path

from jobs.readers.kuairec import read_interactions
from lake.spark import spark_session
from reelflow.config import QualityConfig

raw, out = Path(sys.argv[1]), sys.argv[2]
spark = spark_session()
started = time.perf_counter()
read_interactions(spark, raw, QualityConfig()).write.mode("overwrite").partitionBy("ds").parquet(
    out
)
print(f"SPARK_SECONDS={time.perf_counter() - started:.3f}")
spark.stop()
