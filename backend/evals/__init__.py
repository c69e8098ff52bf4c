"""Evaluation of prompt versions: test cases per assistant, runs through the chat pipeline, offline checks,
comparison of runs (issue 19)."""
