"""User personas: a pool made from the database's domain by method B's user generator, one drawn per dialogue,
recorded on its tasks, played by the user simulator (offline template variation and the LLM prompt), with the
conduct checks still holding; `stats --diversity` shows a run with personas beside one without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from backends.llm.backend import user_private
from backends.offline.user import user_turn
from backends.protocols import UserTurnRequest
from graphs.run import main
from results.diversity import read_diversity
from state.personas import Persona
from state.tasks import Subtask, Task

ROOT = Path(__file__).resolve().parent.parent
DB = str(ROOT / "examples" / "clinic.sqlite")


def _generate(out: Path, *extra: str) -> Path:
    assert main(["generate", "--db", DB, "--dialogues", "8", "--tasks-per-dialogue", "2", "--seed", "4",
                 "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"plain": _generate(root / "plain"), "personas": _generate(root / "personas", "--personas", "6"),
            "again": _generate(root / "again", "--personas", "6")}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_same_seed_gives_the_same_personas_and_the_same_dialogues(runs):
    assert (runs["personas"] / "personas.json").read_bytes() == (runs["again"] / "personas.json").read_bytes()
    strip = lambda line: {**line, "metadata": {k: v for k, v in line["metadata"].items() if k != "run_id"},  # noqa
                          "id": line["id"].split("-d")[-1]}
    first, second = _lines(runs["personas"] / "dialogues.jsonl"), _lines(runs["again"] / "dialogues.jsonl")
    assert [strip(x) for x in first] == [strip(x) for x in second]
    pool = json.loads((runs["personas"] / "personas.json").read_text())["pools"]
    (personas,) = pool.values()
    assert len(personas) == 6 and len({p["name"] for p in personas}) == 6
    for line in first:
        persona = line["metadata"]["tasks"][0]["persona"]
        assert persona in personas
        assert all(t["persona"] == persona for t in line["metadata"]["tasks"])  # one per dialogue, on each task
        assert all(e["verification"]["user_conduct"] == "ok" for e in line["metadata"]["verification"])
    assert not (runs["plain"] / "personas.json").exists()
    assert all("persona" not in t for line in _lines(runs["plain"] / "dialogues.jsonl")
               for t in line["metadata"]["tasks"])
    assert main(["verify", str(runs["personas"])]) == 0


def test_personas_change_only_the_users_words_and_make_them_more_varied(runs, capsys):
    plain, personas = _lines(runs["plain"] / "dialogues.jsonl"), _lines(runs["personas"] / "dialogues.jsonl")
    assert [len(x["messages"]) for x in plain] == [len(x["messages"]) for x in personas]
    assert any(a["content"] != b["content"] for x, y in zip(plain, personas)
               for a, b in zip(x["messages"], y["messages"]) if a["role"] == "user")
    assert main(["stats", str(runs["plain"]), str(runs["personas"]), "--diversity"]) == 0
    printed = capsys.readouterr().out
    assert "User diversity" in printed and "Personas played" in printed
    figures = read_diversity({"without personas": runs["plain"], "with personas": runs["personas"]})
    print({label: d.similarity_mean for label, d in figures.items()})
    assert figures["with personas"].personas > 1 and figures["without personas"].personas == 0
    assert figures["with personas"].similarity_mean < figures["without personas"].similarity_mean


def test_the_offline_user_frames_its_requests_in_the_personas_voice_and_keeps_them_word_for_word():
    ask = "could you look up the vet whose full name is Daniel Reyes and show me the full record?"
    task = Task(goal="g", subtasks=[Subtask(description="Find the vet.", ask=ask)])
    persona = Persona(persona_id="p000", name="Ada Lovelace", role="a retired engineer", verbosity="chatty",
                      phrasing="formal", expertise="novice", patience="hurried", corrects_mistakes=True)
    plain = user_turn(UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")).user_message
    voiced = user_turn(UserTurnRequest(task=task.model_copy(update={"persona": persona}), messages=[], task_start=0,
                                       user_turn=0, rng_key="k")).user_message
    assert ask[1:] in plain and ask[1:] in voiced  # (its first letter may be capitalized)
    assert voiced != plain and "I'm Ada, a retired engineer." in voiced
    later = user_turn(UserTurnRequest(task=task.model_copy(update={"persona": persona}),
                                      messages=[HumanMessage(content=voiced)], task_start=0, user_turn=1,
                                      rng_key="k"))
    assert "Ada" not in later.user_message  # introduced once


def test_the_llm_user_is_told_who_it_plays():
    persona = Persona(persona_id="p001", name="Ben Ode", role="a night-shift nurse", verbosity="terse",
                      patience="hurried")
    text = user_private(Task(goal="g", persona=persona))
    assert "You are Ben Ode, a night-shift nurse." in text and "very short messages" in text and "hurry" in text
    assert user_private(Task(goal="g")) == ""
