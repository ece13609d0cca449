"""`python -m gochat` runs the daemon."""

from gochat.cli import main

raise SystemExit(main())
