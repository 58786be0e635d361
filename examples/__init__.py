"""Example code for gradcheck's README and spec files (not part of the installed package)."""
