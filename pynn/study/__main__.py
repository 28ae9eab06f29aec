import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
