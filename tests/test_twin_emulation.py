"""The twin against the emulation on one workload: same fabric, spec, schedule and connections.

A stride permutation on the k=4 fat-tree, under ``ecmp`` (where hash collisions decide the
result) and ``collective`` (which spreads the flows), and the one-switch non-blocking
baseline, in real Mininet with Open vSwitch and the controller; then the same runs in the
twin in the emulation's timebase, replaying each run's connections (its ``connections.json``,
so the ECMP hash picks the same buckets). Efficiencies relative to the baseline must agree
within 0.25 and rank the two policies alike: a twin that forwarded flows elsewhere, shared
links unfairly or mis-timed them would miss by far more. The agents bind their connections
to the source ports drawn from the seed (``emulation.source_ports: seeded``), so the twin on
its own draw hashes the very 5-tuples the emulation used and gives what the replay gives.
"""

import json
import os

import pytest

from fabric import runner, spec as specs
from topologies import build
from topologies.nonblocking import nonblocking_like
from traffic import workloads
from traffic.ports import schedule_ports

pytestmark = pytest.mark.emulation

WORKLOAD = {"name": "permutation", "params": {"bytes_per_flow": 1_200_000, "kind": "stride"}}
CONTROLLER = {"stats_interval_s": 0.25,
              "options": {"util_tau_s": 1.0, "min_dwell_s": 1.0, "young_bytes": 4096}}


def _spec(policy, backend="emulation"):
    return specs.check({"name": "twin-vs-emulation", "backend": backend, "policy": policy,
                        "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": WORKLOAD, "controller": CONTROLLER,
                        "emulation": {"tcp_window_bytes": 131072},
                        "twin": {"timebase": "emulated"}, "timeout_s": 60})


def test_twin_agrees_with_the_emulation_on_a_stride_permutation(tmp_path, clean_machine):
    fat = build("fattree", k=4)
    cells = [("nonblocking", nonblocking_like(fat), "ecmp"), ("ecmp", fat, "ecmp"),
             ("collective", fat, "collective")]
    eff = {}
    for label, g, policy in cells:
        schedule = workloads.build("permutation", g, 7, **WORKLOAD["params"])
        spec = _spec(policy)
        run_dir = str(tmp_path / label)
        with runner.network(g, spec, os.path.join(run_dir, "net"), lambda m: None) as net:
            emu = runner.run_on(net, schedule, spec, os.path.join(run_dir, "emulation"))
        assert emu["flows_completed"] == emu["flows_total"]
        with open(os.path.join(run_dir, "emulation", "connections.json")) as f:
            conns = json.load(f)
        drawn = schedule_ports(schedule, g, 7)
        assert {fid: c[3] for fid, c in conns.items()} == drawn
        assert emu["source_ports"] == {"mode": "seeded", "bound": len(drawn), "kernel": 0}
        twin = runner.run_twin(g, schedule, _spec(policy, "twin"),
                               os.path.join(run_dir, "twin"), lambda m: None,
                               five_tuples=conns)
        assert twin["flows_completed"] == twin["flows_total"] and twin["backend"] == "twin"
        own = runner.run_twin(g, schedule, _spec(policy, "twin"),
                              os.path.join(run_dir, "twin-own"), lambda m: None)
        assert own["efficiency"] == pytest.approx(twin["efficiency"], rel=1e-9)
        eff[label] = (emu["efficiency"], twin["efficiency"])
    rel = {k: (e / eff["nonblocking"][0], t / eff["nonblocking"][1])
           for k, (e, t) in eff.items() if k != "nonblocking"}
    for label, (emu_rel, twin_rel) in rel.items():
        assert abs(emu_rel - twin_rel) <= 0.25, (label, rel, eff)
    emu_gap = rel["collective"][0] - rel["ecmp"][0]
    twin_gap = rel["collective"][1] - rel["ecmp"][1]
    if abs(emu_gap) > 0.15:
        assert emu_gap * twin_gap > 0, rel
