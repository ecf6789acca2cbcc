"""softphone.signaling layer."""
