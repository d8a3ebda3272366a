"""``python -m fedkd.cli``: the same as the ``fedkd`` command."""
from fedkd.cli import main

raise SystemExit(main())
