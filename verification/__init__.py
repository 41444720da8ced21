"""Plan checking and verification: what a task is expected to do, and whether a dialogue did it.

Used alike by the graph's nodes (the task generator's plan check, the validator), the runner (evaluation
trials) and results (`verify`, rescoring); it knows sources only through environment/sources' protocol.

- plan_check.py: a task's reference plan tried on the dialogue's sandboxes; its expected outcome or why not.
- facts.py: the facts a plan's results yield, and whether the assistant's words told them.
- hard_cases.py: what a hard case (missing-info, missing-tool, out-of-scope, crowded) asks beyond that.
- state_check.py: a task's real diff (live change logs or a replay) against its goal diffs.
- conduct.py: the simulated user's conduct.
- verdict.py: one finished task's Verification, all of the above together.
- scoring.py: an evaluation trial's reward and, for a failed one, whose fault it was.
"""
