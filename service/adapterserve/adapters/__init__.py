"""The adapter math: torch only, no files, no HTTP."""
