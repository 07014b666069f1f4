"""Ingestion: format detection and loaders, chunking, and the pipeline that indexes documents."""
