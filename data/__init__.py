"""Datasets, class tables and data-preparation helpers for the PiCIE toolkit."""
