"""Files in, chunks and vectors out: discover -> read -> chunk -> embed -> store."""
