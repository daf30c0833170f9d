import sys

from gnn1000.cli import main

if __name__ == "__main__":  # importing the module (docs tools walk the package) must not run the CLI
    sys.exit(main())
