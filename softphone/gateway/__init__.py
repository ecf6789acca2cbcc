"""softphone.gateway layer."""
