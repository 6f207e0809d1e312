"""One module per backend; :mod:`._registry` maps the flag to the module."""
