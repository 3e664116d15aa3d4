"""Result tables from run directories: same as `python -m lightjax.report`.

  python scripts/make_tables.py RUN_DIR [RUN_DIR ...] --out DIR

Kept for users who look in scripts/; the code is `lightjax/reportlib.py`.
"""

import os
import sys

# Run from a checkout without installing: put the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lightjax import report  # pylint: disable=wrong-import-position

if __name__ == "__main__":
  sys.exit(report.main(prog="scripts/make_tables.py"))
