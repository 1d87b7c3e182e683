"""sepvit-viz benchmarks: ``python -m benchmarks [--quick|--full]`` (see ``benchmarks/run.py``)."""
