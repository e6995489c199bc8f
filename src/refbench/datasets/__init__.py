"""Dataset builders: one module per dataset family (parse the official layout, validate,
convert to `datasets.Dataset`); `synth/` writes format-faithful synthetic copies."""
