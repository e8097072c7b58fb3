"""From a paper's claim to a label: the claim files, the pre-declared test per claim, and the measurements it reads."""
