"""``python -m mmbalance ...`` (used by ``--devices N`` to run under torchrun)."""
import sys

from .cli import main

sys.exit(main())
