"""Matrix-state recurrences as ops: scalar decay (simple GLA, RetNet, Mamba-2's SSD), the gated
delta rule (Gated DeltaNet, DeltaNet) and xLSTM's mLSTM, each as its sequential reference loop, a
chunked form and, where the family has one, a quadratic parallel form — with fla's signature
(harness.ops.sequences)."""
