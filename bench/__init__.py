"""gochat's own load benchmark: `python -m bench fanout|connect|idle|slow|all`.

The server always runs as a separate process (`python -m gochat`), so its CPU
time and memory can be read from /proc without the generator's own work
mixed in, and so another interpreter (a venv with uvloop, cProfile) can be
swapped in without touching the generator. See bench/README.md.
"""
