# Alloy formation energies (thesis 4.4): NequIP on ML- and DFT-relaxed structures against a
# cluster expansion, with one holdout for both.


def formation_targets():
    """Everything the formation-energy stage produces (part of `rule all`)."""
    return []
