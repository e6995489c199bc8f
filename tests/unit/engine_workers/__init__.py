"""Helpers for the engine tests: a toy model and scripts run in subprocesses (torchrun, SIGKILL)."""
