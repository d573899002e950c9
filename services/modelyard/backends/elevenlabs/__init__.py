"""ElevenLabs' text to speech (``POST /v1/text-to-speech/{voice_id}/stream``) as an engine."""
