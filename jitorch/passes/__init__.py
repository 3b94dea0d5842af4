"""Graph passes: pure Graph -> Graph functions, verified after each (see pipeline.py)."""
