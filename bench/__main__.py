"""python -m bench [--runs N] [--show] [--worktree] [plan_scale | failover | soak | parts]"""
import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main())
