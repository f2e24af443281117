import sys

from hgc.cli import main

sys.exit(main())
