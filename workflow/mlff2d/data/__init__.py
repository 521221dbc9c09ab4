"""The data pipeline (thesis 4.1): ingest, outliers, step selection, splits, exports, dataset figures."""
