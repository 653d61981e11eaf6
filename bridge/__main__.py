"""``python -m bridge`` runs the ``bridge`` command."""

from bridge.ops.cli import main

raise SystemExit(main())
