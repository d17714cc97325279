"""What a file may hold: checked as an upload arrives, and relied on by the batch runner (memory
bounded by the line count)."""

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_FILE_LINES = 50_000
