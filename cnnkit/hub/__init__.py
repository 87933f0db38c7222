"""Downloads and installs: sources, checksums, resumable transfers, safe archive extraction, quarantine."""
