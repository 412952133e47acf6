"""``python -m streamrec``: the same command line as ``streamrec``."""

from streamrec.cli import main

raise SystemExit(main())
