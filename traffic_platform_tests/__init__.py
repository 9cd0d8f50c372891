"""Tests of the traffic platform, mirroring the package layout."""
