"""Demos that run a whole pipeline on built-in data: `tinygpt demo assistant` (assistant.py, on the
arithmetic world of arithmetic.py)."""
