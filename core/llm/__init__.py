"""LLM backends: the Generator protocol, its transformers and OpenAI-compatible implementations, and the factory."""
