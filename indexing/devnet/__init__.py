"""The project's own ERC-8004 devnet: an anvil chain (``anvil``), the five registry contracts deployed on it
and the rows that make the indexer watch them (``contracts``), and a seeded workload with ground truth
(``workload``). Used by the test suite, the benchmark and ``make run``; see docs/devnet.md.

Import the submodules directly; this package imports nothing so that ``indexing.devnet.anvil`` stays
usable before the Django app registry is ready.
"""
