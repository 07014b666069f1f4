"""Answering: retrieval to a validated, cited answer; prompts, citation validation, the extractive writer, redaction."""
