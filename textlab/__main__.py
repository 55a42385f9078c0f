"""`python -m textlab` (also what `torchrun -m textlab` runs)."""

from textlab.cli import entry

if __name__ == "__main__":
    entry()
