"""bench/twin_scale.py: a cell cut short (``--cut-at-us``) and its extrapolation."""

import json

import pytest

from bench import twin_scale


def test_a_cut_cell_stops_early_and_extrapolates_its_loop_by_the_flows_received():
    params = dict(twin_scale.ALLTOALL, tokens_per_host=512)
    whole = twin_scale.run_cell(4, "moe_alltoall", params, "ecmp", 0.01)
    cut = twin_scale.run_cell(4, "moe_alltoall", params, "ecmp", 0.01, cut_at_s=100e-6)
    assert whole["flows_completed"] == whole["flows"] == cut["flows"]
    assert 0 < cut["flows_received"] < cut["flows"]
    assert 0 < cut["events"] < whole["events"]
    loop = cut["loop_cpu_s"] * cut["flows"] / cut["flows_received"]
    assert abs(cut["extrapolated_cpu_s"] - (cut["build_cpu_s"] + cut["setup_cpu_s"] + loop)
               ) <= 1.0   # the parts are rounded to 0.1 s, the total to 1 s


def test_the_cli_reports_cut_cells_and_their_extrapolation(tmp_path, capsys):
    assert twin_scale.main(["--k", "4", "--policies", "ecmp", "--no-ring", "--no-emulation",
                            "--cut-at-us", "500", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cut at 500 us simulated" in out and "whole run extrapolated" in out
    (run_dir,) = tmp_path.iterdir()
    (cell,) = json.loads((run_dir / "scale.json").read_text())["cells"]
    assert cell["cut_at_s"] == pytest.approx(500e-6) and 0 < cell["flows_received"] < cell["flows"]
    assert (run_dir / "scale.png").exists()
