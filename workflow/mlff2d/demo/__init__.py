"""The embedded demo dataset and synthetic Alexandria files."""
