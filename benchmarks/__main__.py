"""``python -m benchmarks [--quick|--full] [--only NAME ...] [--out FILE]``."""

import sys

from benchmarks.run import main

sys.exit(main())
