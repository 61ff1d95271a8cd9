"""Command-line interface: click commands that parse, call one api function, and render."""
