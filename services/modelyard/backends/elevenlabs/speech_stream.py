"""Reading ElevenLabs' streamed audio: body bytes in, `Piece`s out.

Stream speech answers 200 with the audio itself as the body, bytes as they
are made, in the ``output_format`` asked for (``pcm_<rate>``: raw signed
16-bit little-endian mono; ``mp3_44100_128``: MPEG audio). How it reaches the
caller depends on the request's ``audio_format``:

- ``pcm``: each network read is one piece (``audio/pcm`` at the rate), cut to
  whole samples, a split sample's first byte carried to the next piece;
- ``mp3``: each read is one piece (``audio/mpeg``), as it came;
- ``wav``: the PCM is gathered and sent as one WAV file (``audio/wav``) on the
  last piece; a WAV over `MAX_WAV_BYTES` is refused (ask for ``pcm``: it
  streams any length), since one gRPC message carries at most 64 MiB.

The last piece has FINISH_REASON_STOP, the characters spoken (ElevenLabs
bills by character; its undocumented ``character-cost`` header counts
credits, which differ by model, so the text's own length is used) and, for
PCM, the audio's seconds. A body with no audio, or PCM ending mid-sample, is
`ProviderProtocolError`; a connection cut before the body ends is the
engine's `StreamTruncated`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

from modelyard.backends.elevenlabs.request import MP3, PCM, WAV, SpeechRequest
from modelyard.backends.engine import Piece
from modelyard.backends.speech.speech_out import PCM_MIME, SAMPLE_BYTES, WAV_MIME, wav_file
from modelyard_client.errors import InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2

MP3_MIME = "audio/mpeg"
MAX_WAV_BYTES = 48 * 1024 * 1024  # about 17 minutes at 24 kHz: under gRPC's 64 MiB


class SpeechStream:
    def __init__(self, provider: str, model_id: str, request: SpeechRequest) -> None:
        self._provider = provider
        self._model_id = model_id
        self._request = request
        self._audio_bytes = 0  # PCM or MP3 bytes received

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The audio piece by piece, then the last piece with the usage."""
        fmt = self._request.audio_format
        gathered: list[bytes] = []  # WAV: the whole PCM
        carry = b""  # PCM: the first byte of a sample split between reads
        async for chunk in body:
            if not chunk:
                continue
            self._audio_bytes += len(chunk)
            if fmt == WAV:
                if self._audio_bytes > MAX_WAV_BYTES:
                    raise InvalidRequest(
                        f"params.audio_format: the speech is over {MAX_WAV_BYTES >> 20} MiB "
                        "of PCM, more than one WAV answer carries; ask for 'pcm' to stream it",
                        field="params.audio_format",
                    )
                gathered.append(chunk)
                continue
            if fmt == PCM:
                data = carry + chunk
                cut = len(data) - len(data) % SAMPLE_BYTES
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue
            else:
                data = chunk
            yield Piece("", output=self._audio(data))
        if not self._audio_bytes:
            raise ProviderProtocolError(
                f"upstream '{self._provider}' answered no audio for '{self._model_id}'"
            )
        if fmt != MP3 and self._audio_bytes % SAMPLE_BYTES:
            raise ProviderProtocolError(
                f"upstream '{self._provider}' ended the PCM for '{self._model_id}' mid-sample "
                f"({self._audio_bytes} bytes, not whole 16-bit samples)"
            )
        whole = None
        if fmt == WAV:
            wav = wav_file(gathered, self._request.sample_rate_hz)
            whole = self._audio(wav, WAV_MIME)
        yield Piece(
            "",
            common_pb2.FINISH_REASON_STOP,
            output=whole,
            characters=len(self._request.text),
            audio_seconds=self._seconds(),
            dropped_params=self._request.dropped,
        )

    def _audio(self, data: bytes, mime: str = "") -> common_pb2.Output:
        if not mime:
            mime = MP3_MIME if self._request.audio_format == MP3 else PCM_MIME
        audio = common_pb2.Audio(
            data=data, mime_type=mime, sample_rate_hz=self._request.sample_rate_hz
        )
        return common_pb2.Output(audio=audio)

    def _seconds(self) -> float:
        """The PCM's duration; 0 for MP3, whose length the bytes alone do not give."""
        if self._request.audio_format == MP3:
            return 0.0
        return self._audio_bytes / SAMPLE_BYTES / self._request.sample_rate_hz
