"""``python -m cxrdenoise`` is the ``cxrdenoise`` console script."""

from .cli import main

raise SystemExit(main())
