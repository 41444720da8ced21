"""Reading finished runs: statistics, the run summary, export to training sets, the HTML report, and
re-checking a run from its files (verify). Imports nothing from runner/ but the run folder's file layout
(runner/layout.py)."""
