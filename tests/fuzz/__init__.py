"""Differential fuzzing of the compiler: seeded random programs (generator.py) run eagerly, compiled and
in float64, compared by differential.py; test_fuzz.py runs them in the suite, run_fuzz.py for long runs."""
