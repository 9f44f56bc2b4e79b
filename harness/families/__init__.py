"""The built-in recurrent families, each published through the ``seq_harness.families``
entry-point group exactly as a third party publishes its own: torch's four (torch_families),
and minGRU, minLSTM, IndRNN and RG-LRU with their reference loops."""
