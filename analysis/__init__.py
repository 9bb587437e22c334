"""Results loading, summaries, comparison statistics, plots, capacity models and reports."""
