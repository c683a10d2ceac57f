"""Benchmarks of the product, run by a user or CI: step cost per mode (``bench_modes``) and
where an ANT step's time goes (``profile_ant_step``), Ray's overhead
(``bench_orchestrator``), evaluation throughput (``bench_eval``), the cost of eps*
(``bench_eps_star``), and the GPU path (``bench_gpu``, ``check_gpu_paths``,
``bench_gpu_commits.sh``). Results and their commands: docs/PERFORMANCE.md.

Each is a script run from the repository root (``python benchmarks/<name>.py``, or
``python -m benchmarks.<name>``); the tests import them as ``benchmarks.<name>``.
"""
