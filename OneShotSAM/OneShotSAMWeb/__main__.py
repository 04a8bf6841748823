"""``python -m OneShotSAMWeb ...`` = ``oneshotsam web ...``."""

import sys

from OneShotSAMWeb.cli import main

sys.exit(main())
