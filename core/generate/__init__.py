"""Generation: LLM backends, prompts, extractive answers, citation validation and answering."""
