"""The regression gate: statistics a CI job can block a merge on (Mann-Whitney U over fresh
worker processes, Holm, the rank test's intervals, the attainable p), comparing two result sets,
measuring base and head interleaved, and calibrating the gate on the machine it runs on."""
