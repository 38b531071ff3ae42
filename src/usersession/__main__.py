"""``python -m usersession``: the same as the ``usersession`` command."""

import sys

from ._cli import main

sys.exit(main())
