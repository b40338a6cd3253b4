"""`make bench-k8`: a uniform MoE all-to-all of 128 hosts under every adaptive policy.

The spec experiments/alltoall_k8.yaml (k=8 fat-tree, 80 switches, about 16,000 TCP
connections set up before the clock) runs once per policy in one invocation, each on a
network brought up for it; the table says whether every flow completed, how long connection
setup took, how many flows the controller learned and placed per second meanwhile, the
efficiency and the CPU idle (a saturated run is flagged: at this size the emulator itself is
the limit; completing is what this bench checks). It decides and computes nothing itself: the
runner and traffic/metrics.py do.

Run: ``python -m bench.alltoall_k8 [--policies ecmp congestion hedera collective]``.
"""

import argparse
import datetime
import json
import os
import sys

from fabric import bundled, runner, spec as specs

POLICIES = ("ecmp", "congestion", "hedera", "collective")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policies", nargs="+", default=list(POLICIES))
    p.add_argument("--spec", default="alltoall_k8",
                   help="spec file or bundled spec name (default: %(default)s)")
    p.add_argument("--results", default="results")
    a = p.parse_args(argv)
    a.spec = bundled.resolve(a.spec)
    if os.geteuid() != 0:
        print("error: emulation needs root", file=sys.stderr)
        return 2
    out_dir = os.path.join(a.results, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                           + "-bench-k8")
    os.makedirs(out_dir, exist_ok=True)
    runner.terminate_on_sigterm()
    rows = []
    try:
        for policy in a.policies:
            spec = specs.load(a.spec, policy=policy)
            run_dir, summary = runner.run_spec(spec, a.spec, out_dir,
                                               log=lambda m: print(m, flush=True))
            (run,) = summary["runs"]
            rows.append({"policy": policy, "flows_completed": run["flows_completed"],
                         "flows_total": run["flows_total"],
                         "connection_setup_s": run["connection_setup_s"],
                         "controller_flows_learned": run["controller_flows_learned"],
                         "controller_flow_setups_per_s": run["controller_flow_setups_per_s"],
                         "efficiency": run["efficiency"], "cpu_idle_min": run["cpu_idle_min"],
                         "cpu_saturated": run["cpu_saturated"],
                         "ready_s": run["ready"]["ready_s"], "results": run_dir})
    except runner.RUN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: network, controller and agents torn down", file=sys.stderr)
        return 130
    lines = ["uniform MoE all-to-all, k=8 fat-tree (128 hosts), one run per policy",
             f"{'policy':<11} {'completed':>13} {'ready s':>8} {'connect s':>9} "
             f"{'learned':>8} {'learned/s':>9} {'efficiency':>10} {'CPU idle':>8}"]
    for r in rows:
        eff = "-" if r["efficiency"] is None else f"{r['efficiency']:.3f}"
        idle = "-" if r["cpu_idle_min"] is None else f"{r['cpu_idle_min']:.2f}"
        flag = " saturated" if r["cpu_saturated"] else ""
        lines.append(f"{r['policy']:<11} {r['flows_completed']:>6}/{r['flows_total']:<6} "
                     f"{r['ready_s']:>8.1f} {r['connection_setup_s'] or 0:>9.1f} "
                     f"{r['controller_flows_learned'] or 0:>8} "
                     f"{r['controller_flow_setups_per_s'] or 0:>9.0f} {eff:>10} {idle:>8}{flag}")
    print("\n".join(lines))
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "k8.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(f"results: {out_dir}")
    return 0 if all(r["flows_completed"] == r["flows_total"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
