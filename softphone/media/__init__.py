"""softphone.media layer."""
