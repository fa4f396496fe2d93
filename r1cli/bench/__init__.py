"""`r1 bench`: serving speed measured as `vllm bench serve` measures it, plus what R1 needs on top.

metrics (the definitions), load (what is sent), runner (runs and levels), report (table, JSON, plot);
the command itself is r1cli/commands/bench.py.
"""
