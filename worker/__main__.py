"""``python -m worker`` is the ``feedstream`` command."""

from .cli import main

raise SystemExit(main())
