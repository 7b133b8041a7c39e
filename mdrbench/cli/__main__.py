"""`python -m mdrbench.cli ...` runs the `mdrbench` command (as `python -m mdrbench`)."""

from mdrbench.cli import main

if __name__ == "__main__":
    main()
