"""`python -m tinybert ...` is the same as the `tinybert` command."""

import sys

from tinybert.cli import main

sys.exit(main())
