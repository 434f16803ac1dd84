import sys

from ctsd.cli import main

sys.exit(main())
