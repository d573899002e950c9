"""Local speech engines: speech to text with Whisper (`whisper_engine`), text to speech with
Piper (`piper_engine`); the rules they share (`in_process`, `unsupported_params`)."""
