"""Static leaderboard site built only from the results store: ``leaderboard.build.build(results, out)``."""
