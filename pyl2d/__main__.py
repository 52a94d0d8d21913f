import sys

from pyl2d.cli import main

sys.exit(main())
