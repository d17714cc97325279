"""Files: the blob store behind uploads and batch results, and streaming uploads into it."""
