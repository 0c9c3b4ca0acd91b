import sys

from prmsynth.cli import main

if __name__ == "__main__":
    sys.exit(main())
