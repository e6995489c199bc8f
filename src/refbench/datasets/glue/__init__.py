"""GLUE: the builder of the official release layout and its synthesizer."""

from refbench.datasets.glue.builder import TASKS, GlueBuilder, GlueTask, get_task

__all__ = ["TASKS", "GlueBuilder", "GlueTask", "get_task"]
