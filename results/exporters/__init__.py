"""Turning runs into training sets: OpenAI chat lines, LLaMA-Factory ShareGPT, Hugging Face datasets."""
