"""`python -m logger_daemon`: the same as the `logger-daemon` command."""

import sys

from logger_daemon.cli import main

sys.exit(main())
