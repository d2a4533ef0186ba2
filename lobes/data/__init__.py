"""Data tools: audio I/O with clear errors, mini corpora, corpus preparation."""
