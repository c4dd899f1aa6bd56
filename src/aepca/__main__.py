import sys

from aepca.cli import main

sys.exit(main())
