"""Dialogue Forge as a library: every command of `python -m graphs.run` that makes or reads a dataset, as a
function taking one request object and returning a result object. The command line is built on these.

    from dialogue_forge import GenerateRequest, generate

    run = generate(GenerateRequest(sources=["examples/clinic.sqlite"], dialogues=4, out="runs/clinic"))
    run.statistics.samples, run.load_dataset(), run.rejected()
    run.export("trl", "datasets/clinic-trl")

Calls are silent unless given a rich `Console` (`console=Console()`: the command line's progress and tables).
Each `a...` function is the same call on the caller's event loop. A failure raises a `ForgeError` whose
`str()` is the one line the command line prints after `error: `.
"""

from dialogue_forge.errors import ForgeError, InvalidInput, ModelServerError, RunFailed
from dialogue_forge.evaluation import (Evaluation, aevaluate, aregrade, aresume_evaluation, evaluate, regrade,
                                       resume_evaluation)
from dialogue_forge.generation import agenerate, aresume, generate, resume
from dialogue_forge.outputs import Export, averify, export, report, verify
from dialogue_forge.requests import (EvaluateRequest, ExportRequest, GenerateRequest, ReportRequest, ResumeRequest,
                                     VerifyRequest)
from dialogue_forge.run import NoValidDialogues, RejectedLine, Run
from state.config import Settings

__all__ = [
    "EvaluateRequest", "Evaluation", "Export", "ExportRequest", "ForgeError", "GenerateRequest", "InvalidInput",
    "ModelServerError", "NoValidDialogues", "RejectedLine", "ReportRequest", "ResumeRequest", "Run", "RunFailed",
    "Settings", "VerifyRequest", "aevaluate", "agenerate", "aregrade", "aresume", "aresume_evaluation", "averify",
    "evaluate", "export", "generate", "regrade", "report", "resume", "resume_evaluation", "verify",
]
