"""Files: their rows and limits, the blob store behind uploads and batch results, and streaming
uploads into it. Knows nothing of batches (they build on files)."""
