"""The sim's timing model: pure arithmetic over the configured speeds, no clock and no sleeping.

A running sequence waits `ttft_s` before its first token (prefill), whatever its prompt length, then
produces `tokens_per_s` tokens per second for each of its choices, whatever the number of sequences
running beside it (0 tokens/s means every token is ready at once). How many sequences run at once is
the scheduler's business (`max_concurrency`, like vLLM's `max_num_seqs`); the rest wait for a slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferstack.engines.sim.config import SimConfig


@dataclass(frozen=True, slots=True)
class TimingModel:
    ttft_s: float
    tokens_per_s: float

    @classmethod
    def from_config(cls, config: SimConfig) -> TimingModel:
        return cls(ttft_s=config.ttft_ms / 1000.0, tokens_per_s=config.tokens_per_s)

    @property
    def instant_decode(self) -> bool:
        """Every token is ready as soon as the first one is."""
        return self.tokens_per_s <= 0

    def decode_s(self, steps: int) -> float:
        """Seconds from the first token to the last: 50 tokens at 20 tokens/s take (50 - 1) / 20 = 2.45 s."""
        if self.instant_decode or steps <= 1:
            return 0.0
        return (steps - 1) / self.tokens_per_s

    def token_due_s(self, step: int) -> float:
        """When token `step` (0-based) is due, in seconds after the first token: at 20 tokens/s, step 3 at 0.15 s.

        Streams sleep until `first + token_due_s(step)`, an absolute schedule, so write time never adds up
        as drift."""
        if self.instant_decode:
            return 0.0
        return step / self.tokens_per_s

    def tokens_decoded(self, steps: int, since_first_token_s: float) -> int:
        """Tokens per choice produced `since_first_token_s` after the first one, out of `steps`.

        At 20 tokens/s, 0.25 s after the first token: 1 + floor(0.25 * 20) = 6 tokens."""
        if self.instant_decode:
            return steps
        return min(steps, 1 + int(since_first_token_s * self.tokens_per_s))

    def kv_tokens(self, prompt_tokens: int, steps: int, choices: int, since_first_token_s: float | None) -> int:
        """KV-cache entries a running sequence holds: its prompt, plus what every choice has generated so far
        (nothing before prefill ends, `since_first_token_s` None). Estimated from the clock, so non-streamed
        requests count too: a 100-token prompt with 2 choices, 6 tokens in, holds 100 + 2 * 6 = 112."""
        if since_first_token_s is None:
            return prompt_tokens
        return prompt_tokens + choices * self.tokens_decoded(steps, since_first_token_s)
