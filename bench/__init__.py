"""greenroom's benchmarks: plain commands that print figures (timings never go in tests)."""
