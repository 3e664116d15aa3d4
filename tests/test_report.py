"""lightjax.report on summaries written by the real trainer (tiny runs).

Two short real runs (softmax, linear) and one hand-written older summary that
lacks `cost` go through the CLI; the table, csv and plot are then read back.
The real runs live in one test on purpose: under `pytest -n 2` (load
distribution) a shared module fixture would be built once per worker.
"""

import csv
import json
import os
import subprocess
import sys

import matplotlib.image
import pytest

from lightjax import attention, paper, report, tables, trainer
from lightjax.report import __main__ as cli
from lightjax.report import plots, runs
from tests.helpers import REPO, load_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COST_HEADERS = ("train GFLOPs/ex", "fwd GFLOPs/ex", "train peak (MiB)",
                "train steps/s")


def _make_runs(root, data_dir):
  """root/{softmax,linear} from the trainer, root/older/old_softmax by hand.

  Returns:
    {run name: its summary dict}.
  """
  summaries = {}
  for variant in ("softmax", "linear"):
    c = load_config(f"configs/listops.py:tiny,{variant}")
    c.data_dir = data_dir
    c.num_train_steps = c.log_every = c.eval_every = c.checkpoint_every = 10
    c.model.num_layers = 1  # compiling dominates; one layer keeps it short
    trainer.train_and_evaluate(c, str(root / variant))
    summaries[variant] = json.loads(
        (root / variant / "summary.json").read_text())
  # What a trainer from before the cost metrics wrote: same setup as the
  # softmax run (so the two form a group), no `cost`, `device`, `test_loss`
  # or `selection`, and the best validation score named "best_val_accuracy".
  old = {k: v for k, v in summaries["softmax"].items()
         if k not in ("cost", "device", "test_loss", "selection",
                      "best_val_score")}
  old["best_val_accuracy"] = summaries["softmax"]["best_val_score"]
  old["test_accuracy"] = 0.5
  _write_summary(root / "older" / "old_softmax", old)
  summaries["old_softmax"] = old
  return summaries


def _write_summary(workdir, summary):
  workdir.mkdir(parents=True)
  (workdir / "summary.json").write_text(json.dumps(summary))


def _cells(line):
  return [c.strip() for c in line.strip().strip("|").split("|")]


def _md_tables(text):
  """Each markdown table in `text` as a list of {header: cell} dicts."""
  tables, lines = [], text.splitlines()
  for i, line in enumerate(lines):
    if (line.startswith("|") and i + 1 < len(lines)
        and lines[i + 1].startswith("|---")):
      header = _cells(line)
      rows = []
      for body in lines[i + 2:]:
        if not body.startswith("|"):
          break
        rows.append(dict(zip(header, _cells(body))))
      tables.append(rows)
  return tables


def test_report_of_real_runs(tmp_path, data_dir):
  summaries = _make_runs(tmp_path / "runs", data_dir)
  out = tmp_path / "report"
  assert cli.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
  text = (out / "table.md").read_text()
  md_tables = _md_tables(text)

  # --- One row per run, sorted by task then attention, numbers from summaries.
  rows = md_tables[0]
  assert [r["run"] for r in rows] == ["linear", "old_softmax", "softmax"]
  for r in rows:
    s = summaries[r["run"]]
    assert r["attention"] == s["attention"]
    assert r["task"] == "listops"
    assert r["config"] == s["config_name"]
    assert r["test acc (%)"] == f"{100 * s['test_accuracy']:.2f}"
    best_val = s.get("best_val_score", s.get("best_val_accuracy"))
    assert r["best val acc (%)"] == f"{100 * best_val:.2f}"
    assert r["best step"] == str(s["best_step"])
    assert r["params"] == f"{s['num_params']['total']:,}"
    assert r["attn params"] == f"{s['num_params']['attention']:,}"
    assert r["embed params"] == f"{s['num_params']['embedding']:,}"
  by_run = {r["run"]: r for r in rows}
  assert by_run["old_softmax"]["test acc (%)"] == "50.00"
  # LRA Table 1, ListOps: Transformer 36.37, Linear Transformer 16.13.
  assert by_run["softmax"]["LRA paper test acc (%)"] == "36.37"
  assert by_run["old_softmax"]["LRA paper test acc (%)"] == "36.37"
  assert by_run["linear"]["LRA paper test acc (%)"] == "16.13"
  for h in COST_HEADERS:
    assert by_run["old_softmax"][h] == tables.MISSING, h
    assert by_run["softmax"][h] != tables.MISSING, h
  flops = summaries["softmax"]["cost"]["train_flops_per_example"]
  assert float(by_run["softmax"]["train GFLOPs/ex"]) == pytest.approx(
      flops / 1e9, rel=1e-2)

  # --- Grouped: softmax and old_softmax share task, attention and config.
  grouped = {r["attention"]: r for r in md_tables[1]}
  accs = [100 * summaries[n]["test_accuracy"]
          for n in ("softmax", "old_softmax")]
  mean = sum(accs) / 2
  std = abs(accs[0] - accs[1]) / 2 ** 0.5  # sample std of two values
  assert grouped["softmax"]["n"] == "2"
  assert (grouped["softmax"]["test acc (%) mean ± std"]
          == f"{mean:.2f} ± {std:.2f}")
  assert grouped["linear"]["n"] == "1"
  assert "arXiv:2011.04006" in text
  assert "CPU-sized" in text and '"lra"' in text

  # --- CSV: the same rows, plain numbers, missing as empty cells.
  with open(out / "table.csv", newline="") as f:
    csv_rows = list(csv.DictReader(f))
  assert [r["run"] for r in csv_rows] == [r["run"] for r in rows]
  for r in csv_rows:
    s = summaries[r["run"]]
    assert float(r["test_accuracy_pct"]) == pytest.approx(
        100 * s["test_accuracy"])
    assert int(r["params_total"]) == s["num_params"]["total"]
  by_run = {r["run"]: r for r in csv_rows}
  assert float(by_run["softmax"]["lra_paper_test_accuracy_pct"]) == 36.37
  assert float(by_run["linear"]["lra_paper_test_accuracy_pct"]) == 16.13
  assert by_run["old_softmax"]["train_gflops_per_example"] == ""
  assert float(by_run["softmax"]["train_gflops_per_example"]) > 0

  # --- The plot is a real PNG.
  assert (out / "pareto.png").read_bytes().startswith(PNG_SIGNATURE)
  image = matplotlib.image.imread(out / "pareto.png")
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200


def test_summary_with_almost_nothing_still_renders(tmp_path):
  _write_summary(tmp_path / "runs" / "bare", {"task": "listops"})
  report.make_report([str(tmp_path / "runs")], str(tmp_path / "out"))
  row = _md_tables((tmp_path / "out" / "table.md").read_text())[0][0]
  assert row["run"] == "bare"
  for h in ("test acc (%)", "params", "LRA paper test acc (%)") + COST_HEADERS:
    assert row[h] == tables.MISSING, h
  png = (tmp_path / "out" / "pareto.png").read_bytes()
  assert png.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("folder", ["listops_cpu", "mqar_cpu"])
def test_cli_remakes_the_committed_tables(tmp_path, folder):
  # results/<folder> holds real runs' summaries and the report made of
  # them: the command in its README must still make exactly those files.
  # MQAR is no LRA task: no paper column, no LRA notes.
  src = os.path.join(REPO, "results", folder)
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.report", src, "--out", str(tmp_path)],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("table.md", "table.csv"):
    with open(os.path.join(src, name)) as f:
      assert (tmp_path / name).read_text() == f.read(), name
  assert (tmp_path / "pareto.png").read_bytes().startswith(PNG_SIGNATURE)
  assert "| softmax |" in proc.stdout and "Wrote " in proc.stdout
  lra = folder == "listops_cpu"
  assert ("LRA paper test acc" in proc.stdout) == lra
  assert proc.stdout.startswith("# Results vs Long Range Arena Table 1"
                                if lra else "# Results\n")


def test_directory_without_summary_errors_naming_it(tmp_path, capsys):
  empty = tmp_path / "not_a_run"
  (empty / "sub").mkdir(parents=True)
  with pytest.raises(report.ReportError, match="not_a_run"):
    runs.find_summaries([str(empty)])
  with pytest.raises(SystemExit) as e:
    cli.main([str(empty), "--out", str(tmp_path / "out")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert str(empty) in err and "summary.json" in err
  with pytest.raises(report.ReportError, match="does_not_exist"):
    runs.find_summaries([str(tmp_path / "does_not_exist")])


def test_unreadable_summary_errors_naming_the_file(tmp_path):
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "summary.json").write_text("{not json")
  with pytest.raises(report.ReportError, match="broken"):
    runs.load_runs([str(tmp_path)])


def test_a_summary_json_path_is_accepted(tmp_path):
  _write_summary(tmp_path / "run", {"task": "listops"})
  path = str(tmp_path / "run" / "summary.json")
  assert runs.find_summaries([path]) == [path]


def test_clashing_workdir_names_get_their_parent():
  names = runs._short_names(["/r/a/seed0", "/r/b/seed0", "/r/a/linear"])
  assert names == ["a/seed0", "b/seed0", "linear"]


def test_pareto_front():
  pts = [(10, 50), (5, 40), (20, 45), (30, 60), (5, 30), (30, 55)]
  assert plots.pareto_front(pts) == [(5, 40), (10, 50), (30, 60)]
  assert plots.pareto_front([]) == []


def test_paper_mapping_names_real_variants_and_paper_rows():
  from lightjax import data  # pylint: disable=import-outside-toplevel
  assert set(paper.LRA_MODEL) <= set(attention.names())
  assert set(paper.LRA_TASK) <= set(data.TASKS.names())
  # Every LRA task finds its paper column: Table 1's Transformer row.
  assert [runs.paper_accuracy("softmax", t) for t in paper.LRA_TASK] == [
      36.37, 64.27, 57.46, 42.44, 71.40]
  assert runs.paper_accuracy("softmax", "mqar") is None
  paper_rows = {r["model"] for r in paper.load_csv(runs.PAPER_CSV)}
  assert set(paper.LRA_MODEL.values()) <= paper_rows
  table2 = {r["model"] for r in paper.load_csv("lra_table2_speed_memory.csv")}
  assert table2 - set(paper.LRA_MODEL.values()) == {
      "reformer", "sinkhorn", "synthesizer"}  # not in lightjax
  with open(os.path.join(REPO, "lightjax", "paper", runs.PAPER_CSV)) as f:
    first = f.readline()
  assert first.startswith("#") and "2011.04006" in first  # citation kept


def test_a_run_inside_another_is_named_with_its_parent():
  assert runs._short_names(["/r/x/theseus", "/r/x/theseus/replacing",
                            "/r/y/teacher", "/r/x/teacher"]) == [
                                "theseus", "theseus/replacing", "y/teacher",
                                "x/teacher"]


def test_speedup_over_the_softmax_run_of_the_same_setup(tmp_path):
  """Steps/s over softmax's, matched on task and config less the variant;
  a run of another setup, or without a softmax beside it, gets none."""
  def write(name, config_name, attention_name, sps, task="listops"):
    _write_summary(tmp_path / "runs" / name, {
        "task": task, "config_name": config_name, "attention": attention_name,
        "cost": {"train_steps_per_s": sps}})
  write("softmax", "listops:long", "softmax", 2.0)
  write("linear", "listops:long,linear", "linear", 5.0)
  write("local", "listops:local,long", "local", 3.0)
  write("linear_short", "listops:linear", "linear", 9.0)
  write("mqar_linear", "mqar:cpu,linear", "linear", 7.0, task="mqar")
  report.make_report([str(tmp_path / "runs")], str(tmp_path / "out"))
  rows = {r["run"]: r for r in
          _md_tables((tmp_path / "out" / "table.md").read_text())[0]}
  got = {k: r["steps/s vs softmax (x)"] for k, r in rows.items()}
  assert got == {"softmax": "1.00", "linear": "2.50", "local": "1.50",
                 "linear_short": tables.MISSING, "mqar_linear": tables.MISSING}
