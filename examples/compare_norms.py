"""Compare normalization schemes through the Figure-4 probes with matched seeds (Python API).

Same as ``landscape compare --norms none,batch,layer,lp2 --seeds 2 --steps 100``, small enough for a
laptop CPU (a few minutes). Writes runs/compare_example/: compare_*.png, compare_table.md,
summary.json and each run's records.
"""

from landscape.reproduce import EXPERIMENTS, run_experiment

experiment = EXPERIMENTS["compare"]("quick", norms=["none", "batch", "layer", "lp2"], seeds=2,
                                    steps=100, probe_every=10, checkpoint_every=100)
summary = run_experiment(experiment, "runs/compare_example")
print(open("runs/compare_example/compare_table.md").read())
