"""One module per command: its options, its checks and its output, over the pure modules beneath.

r1cli/cli.py registers each (COMMANDS) and is the one error boundary; options shared by several
commands are declared once in r1cli/options.py."""
