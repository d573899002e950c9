"""How segments become a stream: one piece per segment with its times, the token cap, the
finish with the audio's seconds, and the parameters Whisper cannot honour."""

from __future__ import annotations

import pytest

from modelyard.backends.engine import Piece
from modelyard.backends.speech.transcription import (
    TranscribeOptions,
    TranscriptSegment,
    transcribe_options,
    transcript_pieces,
)
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

SEGMENTS = (
    TranscriptSegment(0.0, 2.0, " Hello there.", (50364, 1, 2, 3, 50464)),
    TranscriptSegment(2.0, 3.5, " General Kenobi.", (50464, 4, 5, 50539)),
)


def _decode(tokens: tuple[int, ...]) -> str:
    return " " + "-".join(str(t) for t in tokens if t < 50000)


def _timed(text: str, start_s: float, end_s: float) -> Piece:
    segment = common_pb2.TranscriptSegment(start_s=start_s, end_s=end_s, text=text)
    return Piece(text, output=common_pb2.Output(segments=[segment]))


def test_one_piece_per_segment_with_its_times_then_stop_with_the_audio_seconds() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 0, _decode, 3.75))
    assert pieces == [
        _timed("Hello there.", 0.0, 2.0),  # the transcript does not start with Whisper's space
        _timed(" General Kenobi.", 2.0, 3.5),
        Piece("", common_pb2.FINISH_REASON_STOP, output_tokens=9, audio_seconds=3.75),
    ]


def test_max_tokens_cuts_the_segment_that_crosses_it_and_finishes_length() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 7, _decode, 3.75, ("top_k",)))
    assert pieces == [
        _timed("Hello there.", 0.0, 2.0),
        _timed(" 4", 2.0, 3.5),  # the two tokens left of the second segment; its times kept
        Piece(
            "",
            common_pb2.FINISH_REASON_LENGTH,
            output_tokens=7,
            audio_seconds=3.75,
            dropped_params=("top_k",),
        ),
    ]


def test_max_tokens_reached_exactly_at_a_segment_end_finishes_length() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 5, _decode))
    assert pieces[-1] == Piece("", common_pb2.FINISH_REASON_LENGTH, output_tokens=5)
    assert [p.text for p in pieces[:-1]] == ["Hello there."]


def test_max_tokens_above_the_transcript_finishes_stop() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 10, _decode))
    assert pieces[-1] == Piece("", common_pb2.FINISH_REASON_STOP, output_tokens=9)


def test_no_segment_is_an_empty_transcript_that_stops() -> None:
    assert list(transcript_pieces((), 0, _decode)) == [
        Piece("", common_pb2.FINISH_REASON_STOP, output_tokens=0)
    ]


def test_temperature_is_passed_and_beam_size_comes_from_the_backend() -> None:
    params = common_pb2.GenerationParams(max_tokens=50, temperature=0.0)
    options = transcribe_options(params, 3, "speech/w")
    assert options == TranscribeOptions(beam_size=3, temperature=0.0)
    assert options.keywords() == {"beam_size": 3, "temperature": 0.0}
    unset = transcribe_options(common_pb2.GenerationParams(), 2, "speech/w")
    assert unset.keywords() == {"beam_size": 2}  # faster-whisper's own fallback


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (common_pb2.GenerationParams(top_p=0.5), "params.top_p"),
        (common_pb2.GenerationParams(top_k=5), "params.top_k"),
        (common_pb2.GenerationParams(seed=1), "params.seed"),
        (common_pb2.GenerationParams(stop=["."]), "params.stop"),
        (common_pb2.GenerationParams(response_schema_json="{}"), "params.response_schema_json"),
        (
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
        ),
        (common_pb2.GenerationParams(voice="joe"), "params.voice"),
        (common_pb2.GenerationParams(audio_format="pcm"), "params.audio_format"),
    ],
)
def test_a_parameter_whisper_cannot_honour_is_refused_naming_it(
    params: common_pb2.GenerationParams, field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        transcribe_options(params, 5, "speech/w")
    assert refused.value.field == field
    assert refused.value.message == (
        f"{field} is not supported by model 'speech/w' (whisper, speech to text)"
    )


def test_with_drop_unsupported_params_they_are_left_out_and_named_in_proto_order() -> None:
    params = common_pb2.GenerationParams(
        voice="joe", top_k=5, seed=0, temperature=0.2, drop_unsupported_params=True
    )
    options = transcribe_options(params, 5, "speech/w")
    assert options.dropped == ("top_k", "seed", "voice")  # temperature: Whisper takes it
    assert options.keywords() == {"beam_size": 5, "temperature": pytest.approx(0.2)}


def test_the_first_unsupported_parameter_in_proto_order_is_the_one_named() -> None:
    params = common_pb2.GenerationParams(audio_format="wav", top_p=0.5)
    with pytest.raises(InvalidRequest) as refused:
        transcribe_options(params, 5, "speech/w")
    assert refused.value.field == "params.top_p"
