"""robustcert: certified robustness against data poisoning, backdoors and patches.

Modules are named for the domain: ``data`` (datasets and splits), ``poison`` (attacks),
``partition`` (assignments of training samples to models), ``models`` (architectures), ``train``
(objectives, per-partition training), ``score`` (score matrices), ``certify`` (aggregation
certificates), ``smoothing`` (randomized smoothing), ``bilevel`` (bilevel poisoning), ``analysis``,
``results`` and ``plot`` (tables and figures). ``robustcert.workflow`` holds one stage module per
rules file: what the config asks of each stage, and the steps its scripts call.
"""

__version__ = "0.1.0"
