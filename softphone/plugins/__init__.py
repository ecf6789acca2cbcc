"""softphone.plugins layer."""
