"""The main job: every suite over the registry, then the latency grids, then one report —
interruptible, and resumable where it stopped."""
