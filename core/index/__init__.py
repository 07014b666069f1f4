"""Indexing and retrieval: embedders, the vector store, the keyword index and their fusion."""
