"""robustcert: certified robustness against data poisoning, backdoors and patches.

Modules are named for the domain: ``data`` (datasets and splits), ``poison`` (attacks),
``partition`` (DPA/FA partitioning), ``models`` (architectures), ``train`` (per-partition
training), ``score`` (score matrices), ``certify`` (aggregation certificates), ``smoothing``
(randomized smoothing), ``summary`` and ``plot`` (tables and figures).
"""

__version__ = "0.1.0"
