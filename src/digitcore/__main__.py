"""``python -m digitcore`` is the ``digitcore`` command."""

from digitcore.cli import main

raise SystemExit(main())
