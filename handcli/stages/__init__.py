"""Pipeline stages: each module exposes a pure `artifact in -> artifact out` function and a `*_file` wrapper
that the CLI calls; tests call the same functions."""
