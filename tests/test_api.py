"""The Python API (dialogue_forge) on its own: a whole offline run, an evaluation and exports driven from Python
with no argv, the result objects checked against the files they stand for, and failures raised as typed
exceptions carrying the line the command line prints."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import dialogue_forge as forge
from graphs.run import COMMANDS, main
from tests.clinic_model import ClinicModel
from tests.conftest import CLINIC
from tests.roles import role_of_request
from tests.stub_server import StubServer

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sklearn", "mcp", "psycopg", "torch", "langgraph", "datasets", "sentence_transformers", "openai")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> forge.Run:
    out = tmp_path_factory.mktemp("api") / "clinic"
    return forge.generate(forge.GenerateRequest(sources=[CLINIC], dialogues=4, tasks_per_dialogue=2, seed=5,
                                                concurrency=4, out=out))


def test_a_run_made_from_python_is_its_folder_statistics_and_dataset(api_run):
    written = _lines(api_run.path / "dialogues.jsonl")
    assert api_run.path.name == "clinic" and len(written) == api_run.statistics.samples == 4
    assert api_run.statistics == forge.Run.open(api_run.path).statistics  # what stats.json holds
    dataset = api_run.load_dataset()
    assert dataset.num_rows == len(written)
    assert dataset["id"] == sorted(line["id"] for line in written)
    by_id = {line["id"]: line for line in written}
    for row in dataset:
        messages = [m if isinstance(m, dict) else json.loads(m) for m in row["messages"]]
        assert [m["role"] for m in messages] == [m["role"] for m in by_id[row["id"]]["messages"]]
        assert row["valid"] is True
    assert api_run.lines() == written
    assert api_run.rejected() == []


def test_evaluation_and_exports_from_python(api_run, tmp_path, capsys):
    evaluation = forge.evaluate(forge.EvaluateRequest(run=api_run.path, trials=2, out=tmp_path / "eval"))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    trials = _lines(tmp_path / "eval" / "trials.jsonl")
    assert evaluation.path == tmp_path / "eval"
    assert evaluation.summary.tasks == summary["tasks"] == 8 and len(trials) == 2 * 8 == len(evaluation.trials())
    assert evaluation.pass_hat == {p["k"]: p["value"] for p in summary["pass_hat"]}
    assert set(evaluation.pass_hat) == {1, 2}
    assert evaluation.pass_hat[1] == pytest.approx(sum(t["reward"] for t in trials) / len(trials))
    assert forge.Evaluation.open(evaluation.path).pass_hat == evaluation.pass_hat

    exported = api_run.export("trl", tmp_path / "trl")
    assert exported.ok and exported.format == "trl" and exported.path == tmp_path / "trl"
    assert exported.lines() == _lines(tmp_path / "trl" / "train.jsonl")
    assert len(exported.lines()) == api_run.statistics.samples
    assert all(line["messages"][0]["role"] in ("system", "user") and line["tools"] for line in exported.lines())
    assert exported.summary.splits == {"train": 4}

    if all(t["reward"] == 1 for t in trials):  # the offline assistant passes every task: no pair to make
        with pytest.raises(forge.InvalidInput, match="no preference pair to make"):
            evaluation.export_pairs(tmp_path / "dpo")
    else:
        pairs = evaluation.export_pairs(tmp_path / "dpo")
        assert pairs.format == "dpo" and pairs.lines() == _lines(tmp_path / "dpo" / "train.jsonl")

    assert api_run.verify().problems == []
    assert capsys.readouterr().out == ""  # silent unless given a console


def test_a_console_gets_what_the_command_line_shows(api_run, tmp_path):
    shown = io.StringIO()
    api_run.export("openai", tmp_path / "openai", console=Console(file=shown, width=120))
    assert "openai export" in shown.getvalue() and "train dialogues" in shown.getvalue()


def test_a_bad_request_raises_the_line_the_command_line_prints(tmp_path, capsys):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(forge.InvalidInput) as caught:
        forge.generate(forge.GenerateRequest(sources=[str(missing)], out=tmp_path / "run"))
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert main(["generate", "--db", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"error: {caught.value}\n"

    with pytest.raises(forge.InvalidInput, match=r"^--dialogues must be at least 1 \(got 0\)$"):
        forge.generate(forge.GenerateRequest(sources=[str(CLINIC)], dialogues=0))
    assert not (tmp_path / "run").exists()


class _NeverJSON(ClinicModel):
    def __call__(self, request):
        if role_of_request(request) == "user_simulator":
            return "I would rather not answer in JSON."
        return super().__call__(request)


def test_a_run_with_no_valid_dialogue_raises_with_its_rejections(tmp_path, capsys):
    with StubServer(_NeverJSON(CLINIC)) as server:
        settings = forge.Settings(base_url=server.base_url, model="stub-model")
        with pytest.raises(forge.NoValidDialogues) as caught:
            forge.generate(forge.GenerateRequest(sources=[str(CLINIC)], dialogues=2, tasks_per_dialogue=1,
                                                 out=tmp_path / "api", settings=settings))
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(tmp_path / "cli")])
    error = caught.value
    assert isinstance(error, forge.ForgeError) and error.exit_code == code == 1
    assert str(error) == f"no dialogue was valid; the reasons are in {tmp_path / 'api' / 'rejected.jsonl'}"
    assert capsys.readouterr().err.splitlines()[-1] == "error: " + str(error).replace("api", "cli")
    rejected = error.run.rejected()
    assert [r.id for r in rejected] == [line["id"] for line in _lines(tmp_path / "api" / "rejected.jsonl")]
    assert len(rejected) == 2 and all("BackendOutputError" in r.reason for r in rejected)
    assert error.run.statistics.samples == 0 and error.run.load_dataset().num_rows == 0


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom graphs.run import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)" % argv)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(done.stderr.splitlines()[-1].split())  # the command's own output is on stdout


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["stats", "RUN"]])
def test_a_command_imports_only_what_it_uses(argv, api_run):
    argv = [str(api_run.path) if a == "RUN" else a for a in argv]
    loaded = _modules_after(argv)
    assert "graphs.run" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []


def test_the_module_docstring_names_every_command():
    import graphs.run

    listed = {line.split()[0] for line in graphs.run.__doc__.splitlines() if line.startswith("  ")}
    assert listed == set(COMMANDS)
