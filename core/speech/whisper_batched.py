"""Batched Whisper decoding that keeps every sentence: voiced audio packed into full 30 s windows.

faster-whisper's sequential ``WhisperModel.transcribe`` encodes a padded 30 s window,
decodes it, then seeks back to the last finished sentence and encodes again: on dense
speech a 60 s piece costs three encoder passes and re-decodes the overlap.
``BatchedInferencePipeline`` instead packs the voiced stretches found by Silero VAD
into windows of at most 30 s, encodes and decodes them in batches, each window once.

It has one flaw for us: when a window's decoding stops before the window's audio ends
(its text ends inside a sentence, or the model closes early, as tiny.en does now and
then on dense speech), the sequential path decodes the rest again from the last
timestamp, but the batched path drops it (on the benchmark's dense speech, one sentence
in 130 words). ``ResumingPipeline`` does what the sequential path does, batched: the
unheard rest of every such window is decoded again, all those rests together in one
more batch (at most ``MAX_RESUMES`` times), so no speech is skipped. On the dense
benchmark about one window in six needs it.

Written against faster-whisper 1.2.1 (``forward`` mirrors that version's).
"""

from __future__ import annotations

from math import ceil

import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.audio import pad_or_trim
from faster_whisper.transcribe import get_compression_ratio

# A rest of a window shorter than this is not decoded again: too short to hold a word.
MIN_REST_S = 0.5
# Rests of rests are decoded again at most this many times (each time the model must move on).
MAX_RESUMES = 2


class ResumingPipeline(BatchedInferencePipeline):
    """faster-whisper's batched pipeline, decoding again what a window's decoding left unheard."""

    def forward(self, features, tokenizer, chunks_metadata, options):
        return self._decode(features, tokenizer, chunks_metadata, options, MAX_RESUMES)

    def _decode(self, features, tokenizer, chunks, options, resumes: int) -> list[list[dict]]:
        model = self.model
        fps = model.frames_per_second
        encoder_output, outputs = self.generate_segment_batched(features, tokenizer, options)
        windows, sizes, rests = [], [], []
        for i, (chunk, output) in enumerate(zip(chunks, outputs)):
            duration = chunk["duration"]
            size = int(ceil(duration) * fps)
            sizes.append(size)
            pieces, heard, _ = model._split_segments_by_timestamps(
                tokenizer=tokenizer, tokens=output["tokens"], time_offset=chunk["offset"], segment_size=size,
                segment_duration=duration, seek=0,
            )
            heard_s = heard / fps
            if resumes > 0 and 0 < heard < size and duration - heard_s >= MIN_REST_S:
                rests.append((i, heard, {"offset": chunk["offset"] + heard_s, "duration": duration - heard_s}))
            seek = int(chunk["offset"] * fps)
            windows.append([
                {"text": tokenizer.decode(p["tokens"]), "avg_logprob": output["avg_logprob"],
                 "no_speech_prob": output["no_speech_prob"], "tokens": p["tokens"], "start": p["start"],
                 "end": p["end"], "compression_ratio": get_compression_ratio(tokenizer.decode(p["tokens"])),
                 "seek": seek}
                for p in pieces
            ])
        if options.word_timestamps:
            self.last_speech_timestamp = model.add_word_timestamps(
                windows, tokenizer, encoder_output, sizes,
                options.prepend_punctuations, options.append_punctuations, self.last_speech_timestamp,
            ) or self.last_speech_timestamp
        if rests:
            again = np.stack([pad_or_trim(features[i][:, heard:sizes[i]]) for i, heard, _ in rests])
            resumed = self._decode(again, tokenizer, [meta for _, _, meta in rests], options, resumes - 1)
            for (i, _, _), more in zip(rests, resumed):
                windows[i].extend(more)
        return windows
