"""Profiling: one implementation on one case under torch.profiler — traces for TensorBoard and
Perfetto, and the top operators."""
