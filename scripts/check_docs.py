"""Runs the shell commands of README.md and docs/*.md as they are written.

    python scripts/check_docs.py --list          # every command, with its marker
    python scripts/check_docs.py --quick         # only the seconds-long ones
    python scripts/check_docs.py                 # every runnable one (hours on a CPU)
    python scripts/check_docs.py docs/export.md  # one page

What is a command: each fenced ```bash block of README.md and docs/*.md is
one script; its lines (a `\\` continues a line) are its commands. Other
fences (```python, plain ``` for output) are not run.

The marker convention: an HTML comment on the line right before the fence,
invisible on GitHub, says how the block is checked:

    <!-- check: quick -->              seconds: `--quick` and tests/test_docs.py run it
    (no marker)                        runnable, but minutes or more: only a full run
    <!-- check: skip; REASON -->       needs what a check cannot have (downloads, an
                                       accelerator, the hub, the whole test suite):
                                       listed with its reason, never run
    <!-- check: quick; exit=2 -->      also: the exit code the block must end with
                                       (default 0), for commands that show a refusal

How it runs: the repository (without .git and runs/) is copied once into a
temporary directory and every block runs there, in document order (README
first, then docs/ by name), with `bash -eo pipefail`, cwd = the copy's root.
So commands may write `runs/...` (or even `results/...`): nothing in the
checkout is rewritten, and blocks can build on earlier ones (the docs train
`runs/listops` before they shrink it). Commands that write outside the
repository use /tmp. Set LIGHTJAX_DATA_DIR to keep generated data out of
~/.cache/lightjax. Exit code: 0 when every block that ran ended as marked,
1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!--\s*check:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
# What the copy leaves out: git state, outputs of earlier runs, caches.
IGNORE = shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache",
                                ".benchmarks", "*.egg-info")


@dataclasses.dataclass
class Block:
  """One fenced bash block: where it is, how it is checked, its commands."""
  path: str          # relative to the repository root
  line: int          # 1-based line of the opening fence
  kind: str          # "quick", "long" or "skip"
  reason: str        # why it is skipped ("" otherwise)
  exit_code: int     # the exit code the block must end with
  script: str        # the block's text, as written

  @property
  def commands(self) -> list[str]:
    return split_commands(self.script)

  @property
  def where(self) -> str:
    return f"{self.path}:{self.line}"


def doc_files(root: str = REPO) -> list[str]:
  """README.md, then docs/*.md by name (relative paths)."""
  docs = os.path.join(root, "docs")
  pages = sorted(f for f in os.listdir(docs) if f.endswith(".md")) if os.path.isdir(docs) else []
  return ["README.md"] + [os.path.join("docs", f) for f in pages]


def parse_marker(body: str) -> tuple[str, str, int]:
  """"quick; exit=2" -> ("quick", "", 2); "skip; needs X" -> ("skip", "needs X", 0)."""
  parts = [p.strip() for p in body.split(";")]
  kind, reason, exit_code = parts[0], [], 0
  if kind not in ("quick", "long", "skip"):
    raise ValueError(f"unknown check marker {body!r}: use quick, long or skip; REASON")
  for p in parts[1:]:
    m = re.fullmatch(r"exit=(\d+)", p)
    if m:
      exit_code = int(m.group(1))
    elif p:
      reason.append(p)
  if kind == "skip" and not reason:
    raise ValueError(f"check marker {body!r}: a skip needs a reason")
  return kind, "; ".join(reason), exit_code


def fenced_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
  """(fence line, language, body, marker body or None) for every fenced block."""
  lines, out, i = text.splitlines(), [], 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    start, lang = i, m.group("lang")
    j = i + 1
    while j < len(lines) and not lines[j].startswith("```"):
      j += 1
    prev = start - 1
    marker = MARKER.match(lines[prev]) if prev >= 0 else None
    out.append((start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                marker.group("body") if marker else None))
    i = j + 1
  return out


def blocks(paths: list[str] | None = None, root: str = REPO) -> list[Block]:
  """Every ```bash block of the given pages (default: README.md + docs/*.md)."""
  out = []
  for path in paths or doc_files(root):
    with open(os.path.join(root, path)) as f:
      text = f.read()
    for line, lang, body, marker in fenced_blocks(text):
      if lang != "bash":
        if marker is not None:
          raise ValueError(f"{path}:{line}: a check marker before a ```{lang} block")
        continue
      kind, reason, code = parse_marker(marker) if marker else ("long", "", 0)
      out.append(Block(path, line, kind, reason, code, body))
  return out


def split_commands(script: str) -> list[str]:
  """The script's commands: `\\`-continued lines joined, comment lines dropped."""
  cmds, cur = [], ""
  for raw in script.splitlines():
    line = raw.rstrip()
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
      continue
    if line.endswith("\\"):
      cur += line[:-1].strip() + " "
      continue
    cmds.append(cur + line.strip())
    cur = ""
  if cur:
    cmds.append(cur.strip())
  return cmds


def without_repeats(found: list[Block]) -> list[Block]:
  """The blocks with every command that an earlier block already ran left out
  (a rerun of the same command only resumes a finished run); blocks left
  empty are dropped. For a cheaper check (tests/test_docs.py); a plain run
  runs the docs as written."""
  seen, out = set(), []
  for b in found:
    cmds = [c for c in b.commands if c not in seen]
    seen.update(cmds)
    if cmds:
      out.append(dataclasses.replace(b, script="\n".join(cmds) + "\n"))
  return out


def copy_repo(dest: str, root: str = REPO) -> str:
  """The checkout without .git, runs/ and caches, at dest/repo."""
  target = os.path.join(dest, "repo")
  shutil.copytree(root, target, ignore=IGNORE, symlinks=True)
  return target


def run_block(block: Block, cwd: str, timeout: float | None = None,
              env: dict[str, str] | None = None) -> tuple[bool, int, float, str]:
  """(as marked?, exit code, seconds, the output's tail)."""
  start = time.time()
  try:
    proc = subprocess.run(["bash", "-eo", "pipefail", "-c", block.script], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    code, output = proc.returncode, proc.stdout + proc.stderr
  except subprocess.TimeoutExpired as e:
    code = -1
    output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    output += f"\ntimed out after {timeout} s"
  return code == block.exit_code, code, time.time() - start, output[-3000:]


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="scripts/check_docs.py", description=__doc__.split("\n\n")[0])
  p.add_argument("pages", nargs="*", help="pages to check (default: README.md and docs/*.md)")
  p.add_argument("--list", action="store_true", help="list every command with its marker, run nothing")
  p.add_argument("--quick", action="store_true", help="run only blocks marked `check: quick`")
  p.add_argument("--timeout", type=float, default=None, help="seconds per block (default: none)")
  p.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
  args = p.parse_args(argv)
  pages = [os.path.relpath(os.path.abspath(x), REPO) for x in args.pages] or None
  try:
    found = blocks(pages)
  except (ValueError, OSError) as e:
    print(f"check_docs: {e}", file=sys.stderr)
    return 2

  if args.list:
    for b in found:
      label = b.kind + (f" (exit {b.exit_code})" if b.exit_code else "")
      label += f": {b.reason}" if b.reason else ""
      print(f"{b.where}  [{label}]")
      for c in b.commands:
        print(f"    {c}")
    counts = {k: sum(b.kind == k for b in found) for k in ("quick", "long", "skip")}
    print(f"{len(found)} blocks, {sum(len(b.commands) for b in found)} commands: "
          + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0

  todo = [b for b in found if b.kind == "quick" or (b.kind == "long" and not args.quick)]
  tmp = tempfile.mkdtemp(prefix="check_docs_")
  failed = []
  try:
    cwd = copy_repo(tmp)
    print(f"running {len(todo)} blocks in {cwd}")
    for b in todo:
      ok, code, secs, tail = run_block(b, cwd, args.timeout)
      print(f"{'ok  ' if ok else 'FAIL'} {b.where}  exit {code}"
            f" (want {b.exit_code})  {secs:.1f} s", flush=True)
      if not ok:
        failed.append(b)
        print("\n".join("    | " + l for l in tail.splitlines()), flush=True)
  finally:
    if args.keep:
      print(f"kept {tmp}")
    else:
      shutil.rmtree(tmp, ignore_errors=True)
  skipped = [b for b in found if b not in todo]
  print(f"{len(todo) - len(failed)} of {len(todo)} blocks as marked; {len(skipped)} not run"
        + (" (--quick)" if args.quick else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
