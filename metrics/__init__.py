"""Dialogue quality: embedding diversity, distinct-n, topic distribution, the judge, and the ablation view."""
