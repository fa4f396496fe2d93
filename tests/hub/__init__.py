"""Tests of r1 pull, models and rm against an olah mirror on localhost (conftest.py)."""
