import sys

from qsign.cli import main

sys.exit(main())
