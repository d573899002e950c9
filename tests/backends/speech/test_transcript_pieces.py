"""How segments become a stream: one piece per segment, the token cap, the finish."""

from __future__ import annotations

import pytest

from modelyard.backends.engine import Piece
from modelyard.backends.speech.transcription import (
    TranscribeOptions,
    TranscriptSegment,
    transcribe_options,
    transcript_pieces,
)
from modelyard.errors import InvalidRequest
from modelyard.v1 import common_pb2

SEGMENTS = (
    TranscriptSegment(0.0, 2.0, " Hello there.", (50364, 1, 2, 3, 50464)),
    TranscriptSegment(2.0, 3.5, " General Kenobi.", (50464, 4, 5, 50539)),
)


def _decode(tokens: tuple[int, ...]) -> str:
    return " " + "-".join(str(t) for t in tokens if t < 50000)


def test_one_piece_per_segment_then_stop_with_every_token_decoded() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 0, _decode))
    assert pieces == [
        Piece("Hello there."),  # the transcript does not start with Whisper's space
        Piece(" General Kenobi."),
        Piece("", common_pb2.FINISH_REASON_STOP, output_tokens=9),
    ]


def test_max_tokens_cuts_the_segment_that_crosses_it_and_finishes_length() -> None:
    pieces = list(transcript_pieces(SEGMENTS, 7, _decode))
    assert pieces == [
        Piece("Hello there."),
        Piece(" 4"),  # the two tokens left of the second segment, decoded
        Piece("", common_pb2.FINISH_REASON_LENGTH, output_tokens=7),
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
