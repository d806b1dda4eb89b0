"""`python -m vilasr ...` runs the `vilasr` command."""

import sys

from vilasr.cli.main import main

sys.exit(main())
