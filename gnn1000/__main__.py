import sys

from gnn1000.cli import main

sys.exit(main())
