"""The consent register in the console: releases, their scans, the dry run, held reports."""
