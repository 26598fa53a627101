"""`python -m modelserve` runs the command-line interface."""

from modelserve.cli import main

if __name__ == "__main__":
    main()
