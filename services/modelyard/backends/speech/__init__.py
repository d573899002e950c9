"""Local speech engines: speech to text with Whisper (`whisper_engine`)."""
