# Transfer learning to TMD alloys (thesis 4.3): per alloy and combined, normal against transfer.


def alloy_targets():
    """Everything the alloy stage produces (part of `rule all`)."""
    return []
