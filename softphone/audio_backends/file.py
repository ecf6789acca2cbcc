"""Play audio files into a call and record a call's audio to WAV.

``FileSource`` decodes anything FFmpeg (through PyAV) can read and converts it
to the backend contract (48 kHz mono int16) with ``av.AudioResampler``. It
decodes lazily, a packet at a time, so an hour-long recording costs a few
kilobytes of buffer rather than hundreds of megabytes. ``FileSink`` writes a
48 kHz mono 16-bit WAV with the stdlib ``wave`` module, appending as audio
arrives so nothing is held in memory.
"""

from __future__ import annotations

import errno
import logging
import os
import wave
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import Self

import av
import numpy as np
from av.container import InputContainer

from softphone.audio_backends.base import SAMPLE_RATE, Pcm, silence
from softphone.audio_backends.memory import PcmFifo, as_pcm

__all__ = ["FileSink", "FileSource"]

log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]


def _frame_to_pcm(frame: av.AudioFrame) -> Pcm:
    """Copy a resampled (s16, mono) ``av.AudioFrame`` into a contract PCM array."""
    data: Pcm = np.array(frame.to_ndarray(), dtype=np.int16).reshape(-1)
    return data


def _decode_pcm(container: InputContainer, stream: av.AudioStream) -> Generator[Pcm, None, None]:
    """Yield the stream's audio as 48 kHz mono int16 chunks, one decoded frame at a time.

    A new resampler is started (after flushing the old one) whenever the input
    format changes mid-stream, which ``av.AudioResampler`` otherwise rejects.
    """
    resampler: av.AudioResampler | None = None
    shape: tuple[str, str, int] | None = None
    for frame in container.decode(stream):
        frame_shape = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        if resampler is None or frame_shape != shape:
            if resampler is not None:
                yield from map(_frame_to_pcm, resampler.resample(None))
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            shape = frame_shape
        frame.pts = None  # timestamps are irrelevant here; gaps in them only confuse the resampler
        yield from map(_frame_to_pcm, resampler.resample(frame))
    if resampler is not None:
        yield from map(_frame_to_pcm, resampler.resample(None))


class FileSource:
    """An ``AudioSource`` that plays an audio file (wav, mp3, ogg, flac, m4a, ...).

    The first audio stream is used. At the end of the file reads are padded
    with zeros and ``finished`` becomes true; with ``loop=True`` the file is
    reopened and played again instead. Raises ``FileNotFoundError`` for a
    missing path and ``ValueError`` for a file FFmpeg cannot read or that has
    no audio stream, so a bad path fails when the call is set up, not mid-call.
    """

    def __init__(self, path: StrPath, loop: bool = False) -> None:
        self._path = Path(path)
        self._loop = loop
        self._fifo = PcmFifo()
        self._container: InputContainer | None = None
        self._chunks: Generator[Pcm, None, None] | None = None
        self._pass_samples = 0  # samples decoded in the current pass over the file
        self._eof = False
        self._closed = False
        self._duration_s: float | None = None
        self._open()

    @property
    def path(self) -> Path:
        """The file being played."""
        return self._path

    @property
    def duration_s(self) -> float | None:
        """The file's duration according to its container, if it declares one."""
        return self._duration_s

    @property
    def finished(self) -> bool:
        """True once every sample of a non-looping file has been read (or after close)."""
        return self._closed or (self._eof and len(self._fifo) == 0)

    def _open(self) -> None:
        """Open the file and start a decoding pass from its beginning."""
        if not self._path.is_file():
            raise FileNotFoundError(errno.ENOENT, "audio file not found", str(self._path))
        try:
            container = av.open(str(self._path), mode="r")
        except av.FFmpegError as exc:
            raise ValueError(f"{self._path}: not a readable media file ({exc})") from exc
        if not container.streams.audio:
            container.close()
            raise ValueError(f"{self._path}: file has no audio stream")
        stream = container.streams.audio[0]
        if container.duration is not None:
            self._duration_s = container.duration / av.time_base
        self._container = container
        self._chunks = _decode_pcm(container, stream)
        self._pass_samples = 0

    def _release(self) -> None:
        """Close the decoder and the file (idempotent)."""
        if self._chunks is not None:
            self._chunks.close()
            self._chunks = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def _decode_more(self) -> None:
        """Decode the next chunk into the buffer, handling end of file and looping."""
        chunk: Pcm | None = None
        if self._chunks is not None:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                chunk = None
            except av.FFmpegError as exc:
                # A corrupt tail should end playback, not crash the call.
                log.warning("%s: decoding stopped early: %s", self._path, exc)
                chunk = None
        if chunk is not None:
            self._fifo.push(chunk)
            self._pass_samples += int(chunk.size)
            return
        decoded_anything = self._pass_samples > 0
        self._release()
        self._eof = True
        if self._loop and decoded_anything:
            try:
                self._open()
            except (OSError, ValueError) as exc:
                # The file vanished or changed under us: stop looping, keep the call up.
                log.warning("%s: cannot restart loop: %s", self._path, exc)
            else:
                self._eof = False

    def read(self, samples: int) -> Pcm:
        """Return the next ``samples`` samples of the file, zero-padded past its end."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        if self._closed:
            return silence(samples)
        while len(self._fifo) < samples and not self._eof:
            self._decode_more()
        return self._fifo.pop(samples)

    def close(self) -> None:
        """Release the file; further reads are silence. Safe to call twice."""
        self._closed = True
        self._eof = True
        self._fifo.clear()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FileSink:
    """An ``AudioSink`` that records to a 48 kHz mono 16-bit WAV file.

    Samples are appended as they are written; the RIFF header's lengths are
    finalised by ``close`` (safe to call twice). Writes after close are
    dropped, since the media layer may deliver a last frame during hang-up.
    """

    def __init__(self, path: StrPath) -> None:
        self._path = Path(path)
        writer = wave.open(str(self._path), "wb")  # noqa: SIM115 -- held open until close()
        try:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(SAMPLE_RATE)
        except BaseException:
            writer.close()
            raise
        self._writer: wave.Wave_write | None = writer
        self._samples_written = 0

    @property
    def path(self) -> Path:
        """The WAV file being written."""
        return self._path

    @property
    def samples_written(self) -> int:
        """Samples written to the file so far."""
        return self._samples_written

    @property
    def closed(self) -> bool:
        """Whether the file has been finalised."""
        return self._writer is None

    def write(self, pcm: Pcm) -> None:
        """Append ``pcm`` to the file (little-endian, as WAV requires)."""
        if self._writer is None:
            return
        samples = as_pcm(pcm)
        self._writer.writeframesraw(samples.astype("<i2", copy=False).tobytes())
        self._samples_written += int(samples.size)

    def close(self) -> None:
        """Finalise the WAV header and close the file. Safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
