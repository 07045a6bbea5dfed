"""``python -m worker`` is the ``feedstream`` command."""

from worker.cli import main

raise SystemExit(main())
