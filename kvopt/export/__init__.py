"""Plan exports (JSON, YAML, Markdown review document, CSV) and engine launch configs."""

from kvopt.export.plans import FORMATS, load_plan, render, save

__all__ = ["FORMATS", "load_plan", "render", "save"]
