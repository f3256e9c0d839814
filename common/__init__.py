"""Torch-free helpers shared by every package: the registry shape, atomic file writes, CLI error mapping, the
paths and environment variables every CLI reads (``defaults``).

Nothing here imports torch, numpy or any package of the suite, so the leaderboard (which must build its
page without torch) and the lowest layers can all use it.
"""
