import sys

from vilasr.cli.main import main

sys.exit(main())
