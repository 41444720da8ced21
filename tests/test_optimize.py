"""The trilevel optimizer: prompt parameters move both backends, zeroth-order steps climb a metric,
an offline run prints Table 2 and keeps the best tree under h, a killed run resumes to the same
winner, and one generation runs through the LLM path."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import re
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from backends.protocols import QualityJudgeRequest
from backends.offline import OfflineBackend
from backends.offline.user_agent import OfflineAgentBackend
from backends.llm.user_agent import OpenAIAgentBackend
from backends.registry import register_agent_backend, register_backend
from graphs.reasoning import build_reasoning_item_graph
from graphs.run import main
from graphs.user_agent import build_user_agent_graph
from nodes.optimizer import direction, generate_batch, zo_step
from nodes.user_generator import generate_profile_pool
from knowledge.embedder import get_embedder
from state.agent import ItemInput, ReasoningSettings, UserAgentState
from state.prompt_params import USER_FRAGMENTS, PromptParams, PromptStyle
from tests.fakes import ScriptedChatModel
from tests.reasoning_support import CORPUS, SCENARIO, play_every_role

SETTINGS = ReasoningSettings(backend="offline", max_actions=4)
BUDGET = ["--generations", "2", "--population", "1", "--steps", "1", "--dialogues", "2", "--seed", "5",
          "--max-actions", "3"]
ROWS = ["Unoptimized", "distinct-n", "TF-IDF", "embedding", "Evolved tree"]


def _cli(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


def _optimize(out: Path, *extra: str) -> tuple[int, str]:
    return _cli(["optimize", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), *BUDGET, *extra, "--out", str(out)])


@functools.cache
def offline_run() -> tuple[Path, int, str]:
    out = Path(tempfile.mkdtemp(prefix="forge-optimize-")) / "run"
    code, printed = _optimize(out)
    return out, code, printed


@functools.cache
def starts(count: int = 2) -> tuple[ItemInput, ...]:
    """Users with their action sequences taken, ready to talk."""
    pool = asyncio.run(generate_profile_pool(SCENARIO.read_text(), count, OfflineAgentBackend(), get_embedder(),
                                             SETTINGS, 4))
    agent = build_user_agent_graph().compile()
    made = []
    for i, profile in enumerate(pool.profiles):
        start = ItemInput(agent_id=f"u{i}", scenario=SCENARIO.read_text(), corpus=str(CORPUS), profile=profile, seed=i)
        final = UserAgentState.model_validate(asyncio.run(agent.ainvoke(
            start.model_dump(include=set(UserAgentState.model_fields) & set(ItemInput.model_fields)),
            context=SETTINGS)))
        made.append(start.model_copy(update={"actions": final.actions, "memory": final.memory, "agent_done": True,
                                             "make_question": False}))
    return tuple(made)


def _dialogues(params: PromptParams, offset: int = 0):
    graph = build_reasoning_item_graph().compile()
    return asyncio.run(generate_batch(graph, list(starts()), params, SETTINGS, offset))


def _all(role: str, weight: float) -> PromptStyle:
    names = [f.name for f in USER_FRAGMENTS] if role == "user" else None
    style = PromptStyle(role=role)  # type: ignore[arg-type]
    return PromptStyle(role=role, weights={n: weight for n in (names or style.names)})  # type: ignore[arg-type]


def test_offline_dialogues_follow_the_prompt_fragments():
    high = _dialogues(PromptParams(user=_all("user", 4), assistant=_all("assistant", 4)))
    low = _dialogues(PromptParams(user=_all("user", -4), assistant=_all("assistant", -4)))

    def texts(batch, speaker):
        return [t.text for d in batch for t in d[1:] if t.speaker == speaker]

    assert any("You mentioned $" in t for t in texts(high, "user")), "refer_back"
    assert not any("You mentioned $" in t for t in texts(low, "user"))
    assert any(t.startswith("You asked:") for t in texts(high, "assistant")), "acknowledge (assistant)"
    assert not any(t.startswith("You asked:") for t in texts(low, "assistant"))
    assert any("Working your numbers" in t for t in texts(high, "assistant")), "concrete_figures (assistant)"
    # one concern at a time: the high user recounts one action per message, so the dialogue takes more turns
    assert sum(len(d) for d in high) > sum(len(d) for d in low)
    # concise answers quote one document, not two
    assert max(t.count("According to") for t in texts(high, "assistant")) == 1
    assert max(t.count("According to") for t in texts(low, "assistant")) == 2


def test_zeroth_order_steps_raise_the_rewarded_fragment():
    """A metric that rewards only `refer_back`: the share of user follow-ups that quote an earlier figure."""
    index = [f.name for f in USER_FRAGMENTS].index("refer_back")
    graph = build_reasoning_item_graph().compile()

    def metric_at(step: int):
        async def rewards_refer_back(theta: np.ndarray) -> float:
            params = PromptParams(user=PromptStyle.from_vector("user", theta))
            batch = await generate_batch(graph, list(starts()), params, SETTINGS, step)
            follow_ups = [t.text for d in batch for t in d[1:] if t.speaker == "user"]
            return sum("You mentioned $" in t for t in follow_ups) / max(1, len(follow_ups))
        return rewards_refer_back

    theta = PromptParams().user.vector()
    start = theta[index]
    values = []
    for step in range(4):
        u = direction(11, len(theta), "test", step)
        theta, value, _ = asyncio.run(zo_step(theta, metric_at(step), u, mu=1.0, lr=1.0))
        values.append(value)
    assert theta[index] > start + 0.3, (theta, values)


def _table(printed: str) -> dict[str, list[float]]:
    rows = {}
    for line in printed.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and cells[0] in ROWS:
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


@pytest.mark.timeout(900)  # a whole (tiny) optimization: a few minutes on a busy machine
def test_offline_run_prints_table_2_and_the_evolved_tree_is_best_under_h():
    out, code, printed = offline_run()
    assert code == 0, printed
    table = _table(printed)
    assert list(table) == ROWS and all(len(v) == 4 for v in table.values())
    evolved = table["Evolved tree"][3]
    assert all(evolved >= table[row][3] for row in ROWS), table
    saved = json.loads((out / "quality_table.json").read_text())
    assert [r["metric"] for r in saved] == ROWS
    tree = json.loads((out / "metric_tree.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    # five trees judged: the three single-metric seeds and one random tree, then one offspring of the best
    assert [h["generation"] for h in history] == [0, 0, 0, 0, 1]
    assert history[-1]["parent"] in {h["candidate"] for h in history[:4]}
    assert history[-1]["strategy"] in ("copy", "reinit", "mutation")
    winner = next(h for h in history if h["candidate"] == tree["candidate"])
    assert winner["h"]["mean"] == max(h["h"]["mean"] for h in history) == saved[-1]["mean"]
    assert tree["formula"] == winner["formula"]
    assert all(len(h["steps"]) == 1 for h in history)
    params = json.loads((out / "prompt_params.json").read_text())
    assert params["theta_vector"] == winner["theta"] and params["phi_vector"] == winner["phi"]
    assert params["rendered"]["user"] == PromptParams.from_file_data(params).user.render()


class Crash(Exception):
    pass


class CrashingJudge(OfflineAgentBackend):
    """The offline backend, but the run dies at the n-th judgement (once), as a killed process would."""

    def __init__(self, at: int) -> None:
        self.calls, self.at = 0, at

    async def judge_quality(self, request: QualityJudgeRequest):
        self.calls += 1
        if self.calls == self.at:
            raise Crash("killed")
        return await super().judge_quality(request)


@pytest.mark.timeout(900)  # the uninterrupted run, then one killed and resumed
def test_a_killed_run_resumes_to_the_same_winner(tmp_path):
    first, code, _ = offline_run()
    assert code == 0
    register_backend("crashing-offline", OfflineBackend())
    # 2 dialogues per judgement: the unoptimized batch, then four judged trees; the kill is in generation 1
    register_agent_backend("crashing-offline", CrashingJudge(at=2 * 5 + 1))
    out = tmp_path / "run"
    with pytest.raises(Crash):
        _optimize(out, "--backend", "crashing-offline")
    assert not (out / "metric_tree.json").exists()
    code, printed = _cli(["resume", str(out)])
    assert code == 0, printed
    for name in ("metric_tree.json", "prompt_params.json"):
        assert json.loads((out / name).read_text()) == json.loads((first / name).read_text())
    assert (out / "history.jsonl").read_text() == (first / "history.jsonl").read_text()


def test_one_generation_through_the_llm_path(tmp_path):
    main_model = ScriptedChatModel(responses=[play_every_role] * 400)
    settings = ReasoningSettings(backend="openai", model="main-model")
    register_agent_backend("scripted-optimize", OpenAIAgentBackend(settings, main_model))
    register_backend("scripted-optimize", OfflineBackend())
    out = tmp_path / "run"
    code, printed = _cli(["optimize", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--backend",
                          "scripted-optimize", "--generations", "1", "--population", "1", "--steps", "1",
                          "--dialogues", "2", "--max-actions", "3", "--out", str(out)])
    assert code == 0, printed
    assert list(_table(printed)) == ROWS
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and all(h["h"] == {"coherence": 4.0, "fluency": 5.0, "diversity": 3.0, "mean": 4.0}
                                     for h in history), "h is the model's judgement"
    user_prompts = [call for call in main_model.calls if "You are chatting with an assistant" in call[0].text]
    assert any("Refer back to something said earlier" in call[0].text for call in user_prompts), "θ is rendered"
    temperatures = {kw.get("temperature") for call, kw in zip(main_model.calls, main_model.call_kwargs)
                    if "You are chatting with an assistant" in call[0].text}
    assert len(temperatures) > 1, "perturbed temperatures reach the model"
    assert any("How to answer:" in call[0].text for call in main_model.calls), "φ is rendered"


def test_bad_budget_or_prompt_params_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["optimize", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--generations", "0",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --generations") and len(err.splitlines()) == 1 and not out.exists()
    bad = tmp_path / "params.json"
    bad.write_text(json.dumps({"user": {"role": "user", "weights": {"shout": 1}}}))
    for command in ("reasoning", "ablate"):
        code = main([command, "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--prompt-params", str(bad),
                     "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "unknown user fragment" in err and len(err.splitlines()) == 1 and not out.exists()


def test_reasoning_talks_with_the_tuned_prompts(tmp_path):
    params = PromptParams(user=PromptStyle(role="user", weights={"refer_back": 4.0, "acknowledge": 4.0}))
    path = tmp_path / "prompt_params.json"
    path.write_text(json.dumps(params.summary()))
    out = tmp_path / "run"
    code, printed = _cli(["reasoning", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "2",
                          "--dialogues", "2", "--max-rounds", "0", "--prompt-params", str(path), "--out", str(out)])
    assert code == 0, printed
    config = json.loads((out / "config.json").read_text())
    assert PromptParams.model_validate(config["settings"]["prompt_params"]) == params
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    follow_ups = [m["content"] for item in items for m in item["messages"][2:] if m["role"] == "user"]
    assert follow_ups and all("You mentioned $" in t or "Noted on the" in t for t in follow_ups)
