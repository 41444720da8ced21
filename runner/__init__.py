"""Running many dialogues into a run folder: the one dialogue path (lanes), the batch driver and where it runs
(this process, worker processes, Ray), line writing and the progress bar, persistence, the run folder and its
layout, preflight checks, checkpoints, databases. Reading finished runs is results/."""
