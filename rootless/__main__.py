"""`python -m rootless` is the same as the `rootless` console script."""

from rootless.cli import main

main()
