"""`python -m jitorch …` is the `jitorch` command."""
from jitorch.cli import main

raise SystemExit(main())
