"""Alert engine figures on synthetic streams: same as `finsignal alerts eval` (flags pass through)."""

import sys

from worker.cli import main

if __name__ == "__main__":
    sys.exit(main(["alerts", "eval", *sys.argv[1:]]))
