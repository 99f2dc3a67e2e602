"""`python -m flows.cli ...` (and `torchrun ... -m flows.cli train ...`): the same as `ganops ...`."""

from flows.cli import main

main()
