"""mlff2d: machine-learned force fields for two-dimensional materials, as a Snakemake campaign.

One module per stage of the study: :mod:`ingest`, :mod:`outliers`, :mod:`select_steps`,
:mod:`split`, :mod:`export`, :mod:`dataset_figures`; shared pieces in :mod:`store`,
:mod:`units` and :mod:`config`.
"""

__version__ = "0.1.0"
