"""A set of dialogues' quality report: diversity by embeddings and n-grams, topics, and the judge."""

from __future__ import annotations

import asyncio

from backends.protocols import AgentBackend, QualityJudgeRequest, TopicRequest
from knowledge.embedder import Embedder
from metrics.diversity import cluster, cluster_names, distinct_n, pairwise_similarity, topic_stats
from state.agent import JudgeScore, QualityReport
from state.dialogue import Usage

TOPIC_CLUSTER_THRESHOLD = 0.8


async def quality_report(transcripts: list[str], scenario: str, embedder: Embedder, backend: AgentBackend,
                         judge: bool = True) -> tuple[QualityReport, Usage]:
    usage = Usage()
    vectors = embedder.encode(transcripts)
    topics_found = await asyncio.gather(*(backend.topic(TopicRequest(transcript=t)) for t in transcripts))
    labels = [t for t, _ in topics_found]
    for _, used in topics_found:
        usage = usage + used
    if all(label for label in labels):
        topics = topic_stats([str(label) for label in labels], "llm")
    else:  # offline: clusters of dialogue embeddings, named by their frequent words
        topics = topic_stats(cluster_names(transcripts, cluster(vectors, TOPIC_CLUSTER_THRESHOLD)), "clusters")
    score = None
    if judge and transcripts:
        scores = await asyncio.gather(*(backend.judge_quality(QualityJudgeRequest(scenario=scenario, transcript=t))
                                        for t in transcripts))
        for _, used in scores:
            usage = usage + used
        n = len(scores)
        score = JudgeScore(coherence=round(sum(s.coherence for s, _ in scores) / n, 2),
                           fluency=round(sum(s.fluency for s, _ in scores) / n, 2),
                           diversity=round(sum(s.diversity for s, _ in scores) / n, 2),
                           reasoning=f"mean over {n} dialogues")
    report = QualityReport(dialogues=len(transcripts), similarity=pairwise_similarity(vectors),
                           distinct_1=distinct_n(transcripts, 1), distinct_2=distinct_n(transcripts, 2),
                           topics=topics, judge=score)
    return report, usage
