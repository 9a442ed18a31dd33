"""``python -m softlabels``: the command line (also what Lightning's DDP launcher re-runs in each process)."""

import sys

from softlabels.cli import main

if __name__ == "__main__":
    sys.exit(main())
