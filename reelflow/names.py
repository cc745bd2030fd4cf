"""The names every layer chooses from, each listed once here.

Standard library only: the CLI's argument parser and the DAG files (parsed by the scheduler in
every loop) import it, so it must stay cheap.
"""

# The datasets reelflow reads, each a reader module of that name in jobs/readers/; the command
# line, the DAG params and the synthetic generators (kuairec, kuairand and microlens have one;
# events is a user's own log) derive their choices from this tuple.
DATASETS = ("kuairec", "kuairand", "microlens", "events")
