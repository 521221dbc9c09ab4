"""Transfer learning to alloys (thesis 4.3): transfer sources, alloy models, tables and learning curves."""
