"""softphone.audio_backends layer."""
