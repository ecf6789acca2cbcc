"""softphone.core layer."""
