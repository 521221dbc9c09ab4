import sys

from mlff2d.cli import main

sys.exit(main())
