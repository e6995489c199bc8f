"""Leaderboard: a local store of scored results (the hosted board builds on the same store)."""
