"""The relaxation test (thesis 4.1-4.3): FIRE relaxations, their evaluation, tables, repeats, diagnostics."""
