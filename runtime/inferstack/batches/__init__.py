"""The OpenAI Batch API runtime: validate input files, run their lines through the gateway at batch
priority with a durable checkpoint, write output and error files, cancel and expire."""
