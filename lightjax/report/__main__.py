"""Command line: `python -m lightjax.report RUN_DIR [RUN_DIR ...] --out DIR`.

Collects the `summary.json` of finished runs (each RUN_DIR is a workdir or a
directory above several, searched recursively) into a comparison in the style
of Long Range Arena's Table 1 (Tay et al. 2021, arXiv:2011.04006): DIR/table.md,
DIR/table.csv and DIR/pareto.png. The work is `lightjax.report.make_report`;
this file only parses arguments. Exit codes: 0 done, 2 bad arguments (e.g. a
RUN_DIR with no summary.json, named in the message).
"""

from __future__ import annotations

import argparse
import sys

from lightjax import cli, report


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="lightjax.report", description=__doc__.split("\n\n")[1].replace("\n", " "))
  parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                      help="a run's --workdir, or a directory above several")
  parser.add_argument("--out", required=True, metavar="DIR",
                      help="where table.md, table.csv and pareto.png go")
  args = parser.parse_args(argv)
  with cli.exit_codes("lightjax.report", bad_input=(report.ReportError,)):
    written = report.make_report(args.run_dirs, args.out)
  with open(written["markdown"]) as f:
    print(f.read())
  print("Wrote " + ", ".join(written.values()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
