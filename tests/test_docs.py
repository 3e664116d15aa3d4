"""The docs a newcomer walks: README.md (the front page) and docs/*.md.

Checks what can rot without anyone noticing: links and anchors, the config
specs and `--config.*` overrides the commands use, the `python -m lightjax.*`
modules they name, the README's size and its two commands, and (by running
them) the commands marked `<!-- check: quick -->`. The marker convention and
the runner are scripts/check_docs.py's.
"""

import importlib.util
import os
import re
import shlex
import sys
import time

import pytest

from lightjax import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_AND_RUN = ("pip install -r requirements.txt && python -m lightjax.train"
                   " --config configs/listops.py --workdir runs/listops")
TEST_COMMAND = 'python -m pytest -n 3 -q tests -m "not slow"'
QUICK_BUDGET_S = 60  # CPU seconds the quick commands may take (CI < 15 min)


def _load_check_docs():
  spec = importlib.util.spec_from_file_location(
      "check_docs", os.path.join(REPO, "scripts", "check_docs.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


check_docs = _load_check_docs()
PAGES = check_docs.doc_files(REPO)
LINKED_PAGES = PAGES + [os.path.join("experiments", "README.md")]


def _read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def _prose(text):
  """The text outside fenced blocks (links and headings live there)."""
  out, fenced = [], False
  for line in text.splitlines():
    if line.startswith("```"):
      fenced = not fenced
      continue
    if not fenced:
      out.append(line)
  return "\n".join(out)


def _anchors(text):
  """GitHub's heading anchors: lower case, punctuation dropped, spaces -> '-',
  repeats numbered."""
  seen, out = {}, set()
  for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(text), re.M):
    slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    out.add(slug if n == 0 else f"{slug}-{n}")
  return out


def _commands(with_expected_failures=False):
  """(page, command) for every `python -m lightjax...` / `bash ...` /
  `python scripts/...` command in any fenced block of the docs."""
  out = []
  for page in PAGES:
    text = _read(page)
    for line, _, body, marker in check_docs.fenced_blocks(text):
      if marker and not with_expected_failures:
        if check_docs.parse_marker(marker)[2] != 0:
          continue  # a refusal shown on purpose (an unknown field)
      for cmd in check_docs.split_commands(body):
        if re.search(r"python -m lightjax\.|^bash |python scripts/", cmd):
          out.append((f"{page}:{line}", cmd))
  return out


def _argv(cmd):
  return shlex.split(cmd, comments=True)


# --- (a) links ---------------------------------------------------------------


def test_every_relative_link_and_anchor_exists():
  bad = []
  for page in LINKED_PAGES:
    prose = _prose(_read(page))
    here = os.path.dirname(os.path.join(REPO, page))
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose):
      if re.match(r"[a-z]+:", target):
        continue  # https:, mailto:
      path, _, anchor = target.partition("#")
      full = os.path.normpath(os.path.join(here, path)) if path else os.path.join(REPO, page)
      if not os.path.exists(full):
        bad.append(f"{page}: {target} (no {os.path.relpath(full, REPO)})")
      elif anchor and (not full.endswith(".md") or anchor not in _anchors(open(full).read())):
        bad.append(f"{page}: {target} (no heading #{anchor})")
  assert not bad, "\n".join(bad)


def test_readme_links_every_docs_page():
  readme = _read("README.md")
  missing = [p for p in PAGES[1:] if f"]({p})" not in readme]
  assert not missing, f"README.md does not link {missing}"


# --- (b) configs and overrides -------------------------------------------------


def _config_specs():
  specs = set()
  for page in PAGES:
    specs.update(re.findall(r"--config[ =](configs/[\w/]+\.py(?::[\w,]+)?)", _read(page)))
  return sorted(specs)


@pytest.mark.parametrize("spec", _config_specs())
def test_every_config_spec_loads(spec):
  config = config_lib.load_config_file(os.path.join(REPO, spec))
  assert hasattr(config, "keys"), spec


def test_every_override_names_a_field():
  bad, configs = [], {}
  for where, cmd in _commands():
    argv = _argv(cmd)
    spec = config_lib.config_spec(argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    if not spec or not spec.startswith("configs/"):
      assert not overrides, f"{where}: overrides without a config file: {cmd}"
      continue
    if spec not in configs:
      configs[spec] = config_lib.load_config_file(os.path.join(REPO, spec))
    bad += [f"{where}: {e}" for e in config_lib.check_overrides(configs[spec], argv)]
  assert not bad, "\n".join(bad)


# --- (c) modules and files the commands name ------------------------------------


def test_every_module_and_file_named_exists():
  bad = []
  for page in PAGES:
    for mod in set(re.findall(r"python -m (lightjax(?:\.\w+)+)", _read(page))):
      base = os.path.join(REPO, *mod.split("."))
      if not (os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__main__.py"))):
        bad.append(f"{page}: python -m {mod}: no {mod.replace('.', '/')}.py or __main__.py")
  for where, cmd in _commands(with_expected_failures=True):
    argv = _argv(cmd)
    for a in argv:
      path = a.split(":")[0]
      if re.match(r"(experiments|scripts|configs)/[\w/]+\.(py|sh)$", path) and not os.path.isfile(
          os.path.join(REPO, path)):
        bad.append(f"{where}: {path} does not exist")
  assert not bad, "\n".join(bad)


# --- (d) the front page ----------------------------------------------------------


def test_readme_is_a_front_page_with_the_two_commands():
  readme = _read("README.md")
  assert len(readme.splitlines()) <= 250
  scripts = [b.script for b in check_docs.blocks(["README.md"], REPO)]
  assert INSTALL_AND_RUN + "\n" in scripts
  assert TEST_COMMAND + "\n" in scripts
  assert TEST_COMMAND.replace("python ", "python3 ", 1) in _read(
      os.path.join(".ci", "run"))


def test_every_docs_page_starts_with_what_and_why():
  for page in PAGES[1:]:
    lines = _read(page).splitlines()
    assert lines[0].startswith("# "), f"{page}: no title"
    paragraph = []
    for line in lines[1:]:
      if paragraph and not line.strip():
        break
      if line.strip():
        paragraph.append(line)
    assert len(" ".join(paragraph)) > 200, f"{page}: no what-and-why paragraph"
    assert "```bash" in "\n".join(lines), f"{page}: no commands"


def test_markers_parse_and_list_shows_every_command(capsys):
  found = check_docs.blocks(root=REPO)
  assert {b.kind for b in found} == {"quick", "long", "skip"}
  assert all(b.reason for b in found if b.kind == "skip")
  assert check_docs.main(["--list"]) == 0
  listed = capsys.readouterr().out
  for b in found:
    assert b.where in listed
    for c in b.commands:
      assert c in listed


# --- (e) the quick commands run ---------------------------------------------------


def test_quick_commands_run_as_written(tmp_path):
  quick = [b for b in check_docs.blocks(root=REPO) if b.kind == "quick"]
  assert quick
  cwd = check_docs.copy_repo(str(tmp_path))
  env = dict(os.environ, LIGHTJAX_DATA_DIR=str(tmp_path / "data"))
  start, failed = time.time(), []
  for b in check_docs.without_repeats(quick):
    ok, code, secs, tail = check_docs.run_block(b, cwd, timeout=120, env=env)
    print(f"{b.where}: exit {code} in {secs:.1f} s")
    if not ok:
      failed.append(f"{b.where}: exit {code}, want {b.exit_code}\n{tail}")
  assert not failed, "\n\n".join(failed)
  print(f"quick commands: {time.time() - start:.1f} s (budget {QUICK_BUDGET_S} s of CPU)")
