"""Alloy formation energies (thesis 4.4): formation energies, cluster expansion, NequIP, tables."""
