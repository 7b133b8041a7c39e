"""`python -m mdrbench ...` runs the `mdrbench` command."""

from mdrbench.cli import main

if __name__ == "__main__":
    main()
