"""`r1 eval`: datasets, statistics, the runner over the turn engine, and the report."""
