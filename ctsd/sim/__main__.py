import sys

from ctsd.sim.cli import main

sys.exit(main(sys.argv[1:]))
