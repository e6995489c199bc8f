"""Dataset builders, one place per family: `<family>.py`, or a `<family>/` package holding the
builder, its readers / geometry and its synthesizer (a format-faithful synthetic copy)."""
