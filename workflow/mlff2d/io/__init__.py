"""Neutral helpers of every stage: the frame store, table files, figures, units, provenance, labels."""
