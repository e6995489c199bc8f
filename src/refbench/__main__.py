"""`python -m refbench ...` (and `torchrun -m refbench ...`) runs the CLI."""

from refbench.cli import main

if __name__ == "__main__":
    main()
