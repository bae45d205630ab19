"""`make bench`: wall times of the deploy on the Docker lab (see README.md here).

Run from the repository root: ``python -m bench [--runs N] [--show] [--worktree]``. The code is
in ``bench/run.py``; ``floor.py`` (the floor deploy) and ``pyinfra_traced.py`` (pyinfra's CLI with
a tracing hook) are run by path, not imported. Test tooling: not part of the installed product.
"""
