"""Running many dialogues into a run folder: the batch driver, worker processes and Ray, persistence, the run
folder and its layout, preflight checks, checkpoints, databases and the dataset line writer. Reading finished
runs is results/."""
