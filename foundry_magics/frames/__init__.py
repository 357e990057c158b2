"""The DataFrame face: `df.foundry.*` on pandas (`accessor`), the operations it runs over the
engine (`ops`), and the import hook that registers the accessor when pandas is imported.

Importing this package imports neither pandas nor the engine.
"""
