"""Command-line tools (data preparation, file generation) for the PiCIE toolkit."""
